#!/usr/bin/env bash
# Runs a command with the local test peers up: DynamoDB Local (in memory) and local-kms, each on a
# free loopback port, and the AWS SDK environment pointing at them:
#   AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_KMS, AWS_REGION=us-east-1,
#   AWS_ACCESS_KEY_ID=test, AWS_SECRET_ACCESS_KEY=test, AWS_EC2_METADATA_DISABLED=true
# Both peers are stopped when the command ends, fails or is interrupted; the command's exit code is
# the script's. The peers' logs go to a temporary folder whose tails are printed when the command
# fails (the folder is then kept; set CAPIF_KEEP_PEER_LOGS=1 to keep it always).
#
# Usage: scripts/with-peers.sh [--serve] CMD [ARG...]
#   e.g. scripts/with-peers.sh go test ./...
# --serve: CMD is a server stopped with Ctrl-C or SIGTERM (make run-aws). An interrupt is then its
# normal end: CMD gets SIGTERM, the script's exit code is CMD's own (0 after a clean stop) and the
# peer logs go with the temporary folder unless CMD failed.
# Installs the peers first when needed (scripts/tools.sh). Tunables (environment):
#   PEERS_START_TIMEOUT   seconds to wait for each peer to answer (default 90)
#   DYNAMODB_LOCAL_JAVA_OPTS  extra JVM options for DynamoDB Local (default -Xmx1g)
set -euo pipefail

SERVE=0
if [[ ${1:-} == --serve ]]; then
	SERVE=1
	shift
fi
if [[ $# -eq 0 ]]; then
	sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START_TIMEOUT=${PEERS_START_TIMEOUT:-90}

log() { printf 'with-peers: %s\n' "$*" >&2; }

# Paths of the pinned tools (installs them if missing).
eval "$("$ROOT/scripts/tools.sh" --print-env)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/capif-peers.XXXXXX")
DDB_LOG="$WORK/dynamodb-local.log"
KMS_LOG="$WORK/local-kms.log"
DDB_PID=""
KMS_PID=""
CMD_PID=""  # the command, while it runs
CMD_PGID="" # its process group: whatever it left running is stopped too
RC=1
STOPPED_RC=0 # the exit status stop_pid collected

# stop_pid PID [GROUP]: TERM, then KILL after 5 s. With GROUP, PID leads a process group and the
# whole group is signalled, so the command's own children (test binaries, servers) go too.
stop_pid() {
	local pid=$1 target=$1 tries=${3:-50}
	STOPPED_RC=0
	[[ -n $pid ]] || return 0
	[[ ${2:-} == group ]] && target=-$pid
	kill -TERM -- "$target" 2>/dev/null || return 0
	for _ in $(seq "$tries"); do
		kill -0 -- "$target" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "$target" 2>/dev/null || true
	wait "$pid" 2>/dev/null || STOPPED_RC=$? # (set -e: a nonzero status must not end the script)
}

print_tails() {
	local f
	for f in "$DDB_LOG" "$KMS_LOG"; do
		[[ -f $f ]] || continue
		log "---- last lines of $f ----"
		tail -n 40 "$f" >&2 || true
	done
}

cleanup() {
	trap - EXIT INT TERM HUP
	stop_pid "$CMD_PGID" group
	stop_pid "$DDB_PID"
	stop_pid "$KMS_PID"
	rm -rf "$WORK/kms-data"
	if [[ $RC -ne 0 ]]; then
		print_tails
		log "peer logs kept in $WORK"
	elif [[ ${CAPIF_KEEP_PEER_LOGS:-} == 1 ]]; then
		log "peer logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}

on_signal() {
	RC=$1
	if [[ $SERVE == 1 ]]; then
		# A server's normal end: its own status after SIGTERM is the result (it gets the 20 s a
		# graceful shutdown may take).
		log "stopping the command and the peers"
		RC=0
		if [[ -n $CMD_PID ]]; then
			stop_pid "$CMD_PGID" group 250
			RC=$STOPPED_RC
			CMD_PGID=""
		fi
	else
		log "interrupted; stopping the command and the peers"
	fi
	cleanup
	exit "$RC"
}

trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port in the ephemeral-free range 20000-32767 that nothing listens on. A peer can
# still lose the race for it, which start_peer handles by trying another one.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 12768))
		if port_free "$p"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# answers KIND PORT: the peer on PORT responds to a request of its protocol.
answers() {
	local target
	case $1 in
	dynamodb) target=DynamoDB_20120810.ListTables ;;
	kms) target=TrentService.ListKeys ;;
	esac
	# Any HTTP status means the server is up; DynamoDB Local answers 400 to an unsigned request.
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST \
		-H "X-Amz-Target: $target" -H 'Content-Type: application/x-amz-json-1.1' \
		--data '{}' "http://127.0.0.1:$2/" 2>/dev/null) || true
	[[ -n $code && $code != 000 ]]
}

# start_dynamodb PORT / start_kms PORT start a peer in the background and set its PID variable.
start_dynamodb() {
	# The JVM resolves DynamoDBLocal_lib relative to the working directory, so run it from there.
	# shellcheck disable=SC2086 # JVM options are a word list on purpose
	(cd "$(dirname "$DYNAMODB_LOCAL_JAR")" &&
		exec java ${DYNAMODB_LOCAL_JAVA_OPTS:--Xmx1g} -Djava.library.path="$DYNAMODB_LOCAL_LIB" \
			-jar "$DYNAMODB_LOCAL_JAR" -inMemory -port "$1" -disableTelemetry) </dev/null >>"$DDB_LOG" 2>&1 &
	DDB_PID=$!
}

start_kms() {
	mkdir -p "$WORK/kms-data"
	# KMS_REGION matches AWS_REGION so key ARNs name the region clients use; the seed path points
	# at nothing so no key appears that a test did not create.
	PORT=$1 KMS_DATA_PATH="$WORK/kms-data" KMS_REGION=us-east-1 KMS_SEED_PATH="$WORK/no-seed.yaml" \
		"$LOCAL_KMS_BIN" </dev/null >>"$KMS_LOG" 2>&1 &
	KMS_PID=$!
}

# start_peer KIND: start KIND on a free port and wait until it answers; sets PORT_<KIND>.
start_peer() {
	local kind=$1 port pid deadline
	for attempt in 1 2 3; do
		port=$(free_port) || {
			log "no free loopback port found"
			return 1
		}
		case $kind in
		dynamodb)
			start_dynamodb "$port"
			pid=$DDB_PID
			;;
		kms)
			start_kms "$port"
			pid=$KMS_PID
			;;
		esac
		deadline=$((SECONDS + START_TIMEOUT))
		while ((SECONDS < deadline)); do
			if ! kill -0 "$pid" 2>/dev/null; then
				break # exited: most likely lost the port to someone else
			fi
			if answers "$kind" "$port"; then
				printf -v "PORT_${kind}" '%s' "$port"
				log "$kind is up on 127.0.0.1:$port (pid $pid)"
				return 0
			fi
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$kind did not answer within ${START_TIMEOUT}s"
			return 1
		fi
		wait "$pid" 2>/dev/null || true
		log "$kind exited during start-up (attempt $attempt); retrying on another port"
	done
	return 1
}

for tool in curl setsid; do
	command -v "$tool" >/dev/null 2>&1 || {
		log "$tool is required (Debian: apt-get install -y curl util-linux)"
		exit 1
	}
done

# DynamoDB Local first: its JVM start-up (a few seconds) dominates; local-kms is up in milliseconds.
if ! start_peer dynamodb; then
	RC=1
	exit 1
fi
if ! start_peer kms; then
	RC=1
	exit 1
fi

export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$PORT_dynamodb"
export AWS_ENDPOINT_URL_KMS="http://127.0.0.1:$PORT_kms"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_EC2_METADATA_DISABLED=true
# A profile or session token from the caller's environment would mix real credentials in.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE AWS_ENDPOINT_URL

# Run CMD in the background and wait for it, so a signal reaches our trap at once; <&0 keeps the
# caller's standard input (a background job would otherwise read /dev/null). setsid gives it a
# process group of its own (its pid), which cleanup stops as a whole.
set +e
setsid --wait "$@" <&0 &
CMD_PID=$!
CMD_PGID=$CMD_PID
wait "$CMD_PID"
RC=$?
CMD_PID=""
set -e
if [[ $RC -ne 0 ]]; then
	log "command exited with status $RC: $*"
fi
exit "$RC"
