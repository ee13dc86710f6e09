#!/usr/bin/env bash
# Prints the request path's costs as ratios measured in the same run: the in-process handler
# benchmarks (shared/httpapi BenchmarkHandlers: router, identity, decoding, domain, embedded
# store, local ES256 key, access log with its metrics; no TLS) over crypto/ecdsa's own
# BenchmarkSign/P256, the bare signature every token needs. The two are run alternately ROUNDS
# times (the machine is shared, so a ratio of neighbouring runs is steadier than either figure)
# and the medians compared. Regression bounds: token ≤ 2.0×, GET ≤ 0.5× (on Lambda every token
# also waits on DynamoDB and KMS; these bound the code's own share, not a user-visible figure).
#
# Usage: scripts/bench-ratios.sh        ROUNDS (default 5) and BENCHTIME (default 1s) tune it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
ROUNDS=${ROUNDS:-5}
BENCHTIME=${BENCHTIME:-1s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "go test -run '^\$' -bench 'Handlers/(token|get|update)\$' -benchmem -benchtime $BENCHTIME ./shared/httpapi/"
echo "go test crypto/ecdsa -run '^\$' -bench 'BenchmarkSign/P256\$' -benchmem -benchtime $BENCHTIME"
echo "alternately, $ROUNDS rounds"
for ((i = 1; i <= ROUNDS; i++)); do
	$GO test -run '^$' -bench 'Handlers/(token|get|update)$' -benchmem -benchtime "$BENCHTIME" ./shared/httpapi/ >>"$out"
	$GO test crypto/ecdsa -run '^$' -bench 'BenchmarkSign/P256$' -benchmem -benchtime "$BENCHTIME" >>"$out"
done
grep -E '^Benchmark' "$out"
echo
awk '
/^Benchmark(Handlers\/(token|get|update)|Sign\/P256)(-[0-9]+)? / {
	name = $1; sub(/-[0-9]+$/, "", name)
	n[name]++; t[name, n[name]] = $3
	for (i = 4; i <= NF; i++) if ($(i) == "allocs/op") a[name] = $(i - 1)
}
function median(name,   k, m, v, i, j, x) {
	m = n[name]
	for (i = 1; i <= m; i++) v[i] = t[name, i]
	for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
	return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
END {
	sig = "BenchmarkSign/P256"
	if (!n[sig]) { print "no BenchmarkSign/P256 result" > "/dev/stderr"; exit 1 }
	s = median(sig)
	printf "%-28s %10s %8s %10s   %s\n", "benchmark (median)", "µs/op", "allocs", "× sign", "bound"
	printf "%-28s %10.1f %8s %10s\n", "crypto/ecdsa Sign P256", s / 1000, a[sig], "1.00"
	split("token get update", ops, " ")
	budget["token"] = "≤ 2.0×"; budget["get"] = "≤ 0.5×"; budget["update"] = "fsync-bound"
	limit["token"] = 2.0; limit["get"] = 0.5
	for (k = 1; k <= 3; k++) {
		name = "BenchmarkHandlers/" ops[k]
		if (!n[name]) { print "no " name " result" > "/dev/stderr"; exit 1 }
		m = median(name)
		over = (ops[k] in limit) && m / s > limit[ops[k]] ? "  OVER" : ""
		printf "%-28s %10.1f %8s %10.2f   %s%s\n", "handler " ops[k], m / 1000, a[name], m / s, budget[ops[k]], over
	}
}' "$out"
