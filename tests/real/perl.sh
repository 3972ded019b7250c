#!/bin/bash
# perl under the allocator: hashes, regexes, sorting, string building.
# Output must match a run without preload.
. "$(dirname "$0")/../lib/th.sh"

if ! command -v perl >/dev/null; then
    th_skip hashes_regex "perl not installed"
    th_exit
fi

cat >"$TH_TMP/work.pl" <<'PERL'
use strict;
use warnings;
my %h;
for my $i (1 .. 200000) {
    $h{"key$i"} = "v" . ($i * 31 % 1000) . ("x" x ($i % 17));
}
delete $h{"key$_"} for grep { $_ % 3 == 0 } 1 .. 200000;
my $total = 0;
$total += length($h{$_}) for keys %h;
print "hash ", scalar(keys %h), " $total\n";

my $s = join(",", map { "item$_=" . ($_ * 7) } 1 .. 100000);
my @m = ($s =~ /item(\d+)=(\d*7)\b/g);
my $n = () = $s =~ /item\d*9=/g;
(my $t = $s) =~ s/item(\d+)=(\d+)/$2:$1/g;
print "regex ", scalar(@m), " $n ", length($t), " ", substr($t, 0, 40), "\n";

my @sorted = sort { $h{$a} cmp $h{$b} || $a cmp $b } keys %h;
print "sort $sorted[0] $sorted[-1] ", scalar(@sorted), "\n";

my %count;
$count{$_}++ for map { sprintf "%03d", $_ % 997 } 1 .. 300000;
my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 4];
print "count @top\n";

my @nested = map { { id => $_, list => [ (1) x ($_ % 20) ], s => "s" x $_ } } 1 .. 3000;
my $sum = 0;
$sum += scalar(@{ $_->{list} }) + length($_->{s}) for @nested;
print "nested $sum\n";
PERL

th_run "$TH_TMP/ref.out" "$TH_TMP/ref.err" perl "$TH_TMP/work.pl"
st=$?
if [ $st -ne 0 ]; then
    th_fail hashes_regex "reference run without preload failed: $(th_status_text $st): $(th_first_line "$TH_TMP/ref.err")"
    th_exit
fi
th_run_tide "$TH_TMP/tide.out" "$TH_TMP/tide.err" perl "$TH_TMP/work.pl"
st=$?
if th_check_run hashes_regex $st "$TH_TMP/tide.err" &&
    th_same hashes_regex "$TH_TMP/ref.out" "$TH_TMP/tide.out"; then
    if grep -qx 'hash 133334 .*' "$TH_TMP/tide.out"; then
        th_ok hashes_regex
    else
        th_fail hashes_regex "unexpected result: $(head -1 "$TH_TMP/tide.out")"
    fi
fi
th_exit
