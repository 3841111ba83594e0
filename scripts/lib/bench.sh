# shellcheck shell=bash
# Helpers shared by scripts/bench-incus, scripts/bench-daemon and
# scripts/bench-pool.

# median NUM...: prints the median of the numbers (the mean of the middle
# two when there is an even number of them).
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
