#!/usr/bin/env bash
# Installs the test peers and tools, at pinned versions, into the git-ignored .tools/ folder of
# the repository:
#   DynamoDB Local 1.25.1  (npm amplify-dynamodb-simulator@2.9.30 ships the jar)
#   local-kms              (go install, pinned pseudo-version)
#   aws-lambda-rie         (go install, pinned pseudo-version)
# Idempotent: each tool is skipped when its marker file records the pinned version and its files
# are present, so running it again (as `make` and .ci/run do) costs nothing.
#
# Usage: scripts/tools.sh [--print-env]
#   --print-env  after installing, print shell assignments (DYNAMODB_LOCAL_JAR=…, …) to eval.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
MARKERS="$TOOLS/markers"

DDB_NPM_PKG=amplify-dynamodb-simulator
DDB_NPM_VERSION=2.9.30
DDB_LOCAL_VERSION=1.25.1 # the DynamoDB Local release that DDB_NPM_VERSION bundles
LOCAL_KMS_MOD=github.com/nsmithuk/local-kms
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
RIE_MOD=github.com/aws/aws-lambda-runtime-interface-emulator
RIE_PKG=$RIE_MOD/cmd/aws-lambda-rie
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d

DDB_DIR="$TOOLS/npm/node_modules/$DDB_NPM_PKG/emulator"
DDB_JAR="$DDB_DIR/DynamoDBLocal.jar"
DDB_LIB="$DDB_DIR/DynamoDBLocal_lib"

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# marker_ok NAME VERSION: the marker of NAME records VERSION.
marker_ok() { [[ -f "$MARKERS/$1" && "$(cat "$MARKERS/$1")" == "$2" ]]; }
mark() { printf '%s\n' "$2" >"$MARKERS/$1"; }

# go_bin_version FILE MODULE: the module version a Go binary was built from ("" if unknown).
go_bin_version() {
	go version -m "$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m { print $3 }'
}

need_java() {
	if ! command -v java >/dev/null 2>&1; then
		log "java is required to run DynamoDB Local but is not installed."
		log "On Debian/Ubuntu install it with: apt-get install -y openjdk-17-jre-headless"
		log "(run 'apt-get update' first on a fresh machine)"
		exit 1
	fi
}

install_dynamodb_local() {
	if marker_ok dynamodb-local "$DDB_NPM_PKG@$DDB_NPM_VERSION" && [[ -f "$DDB_JAR" && -d "$DDB_LIB" ]]; then
		log "DynamoDB Local $DDB_LOCAL_VERSION already installed"
		return
	fi
	command -v npm >/dev/null 2>&1 || die "npm is required to fetch DynamoDB Local (apt-get install -y npm)"
	log "installing DynamoDB Local $DDB_LOCAL_VERSION ($DDB_NPM_PKG@$DDB_NPM_VERSION)"
	mkdir -p "$TOOLS/npm"
	# --ignore-scripts: the package's postinstall would try to download the jar again from the
	# internet; the jar is already inside the npm tarball.
	npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
		--prefix "$TOOLS/npm" "$DDB_NPM_PKG@$DDB_NPM_VERSION" >&2
	[[ -f "$DDB_JAR" && -d "$DDB_LIB" ]] || die "the npm package did not contain $DDB_JAR and $DDB_LIB"
	mark dynamodb-local "$DDB_NPM_PKG@$DDB_NPM_VERSION"
}

# install_go_tool NAME PACKAGE MODULE VERSION
install_go_tool() {
	local name=$1 pkg=$2 mod=$3 version=$4
	if marker_ok "$name" "$mod@$version" && [[ -x "$BIN/$name" ]]; then
		log "$name $version already installed"
		return
	fi
	# A binary installed earlier without a marker is accepted when its build info says it is the
	# pinned version.
	if [[ -x "$BIN/$name" && "$(go_bin_version "$BIN/$name" "$mod")" == "$version" ]]; then
		log "$name $version already installed (marker written)"
		mark "$name" "$mod@$version"
		return
	fi
	command -v go >/dev/null 2>&1 || die "go is required to build $name"
	log "installing $name $version"
	# `go install pkg@version` ignores the repository's go.mod; running it from .tools/ and with
	# our own GOFLAGS keeps a caller's -mod or -tags settings out of the tool build too.
	(cd "$TOOLS" && GOBIN="$BIN" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "$pkg@$version") >&2
	[[ -x "$BIN/$name" ]] || die "go install did not produce $BIN/$name"
	mark "$name" "$mod@$version"
}

main() {
	local print_env=false
	for a in "$@"; do
		case $a in
		--print-env) print_env=true ;;
		-h | --help)
			sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
			return 0
			;;
		*) die "unknown argument: $a" ;;
		esac
	done
	need_java
	mkdir -p "$BIN" "$MARKERS"
	install_dynamodb_local
	install_go_tool local-kms "$LOCAL_KMS_MOD" "$LOCAL_KMS_MOD" "$LOCAL_KMS_VERSION"
	install_go_tool aws-lambda-rie "$RIE_PKG" "$RIE_MOD" "$RIE_VERSION"
	if $print_env; then
		printf 'DYNAMODB_LOCAL_JAR=%q\n' "$DDB_JAR"
		printf 'DYNAMODB_LOCAL_LIB=%q\n' "$DDB_LIB"
		printf 'LOCAL_KMS_BIN=%q\n' "$BIN/local-kms"
		printf 'AWS_LAMBDA_RIE_BIN=%q\n' "$BIN/aws-lambda-rie"
	fi
}

main "$@"
