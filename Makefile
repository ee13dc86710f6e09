# CAPIF_Security_API — see README.md.
#   make run    the whole API locally (embedded store, local key, dev CA in .capif-local/)
#   make test   every test: installs the pinned test peers into .tools/ and starts them itself
SHELL := /bin/bash
GO    ?= go

.PHONY: help run run-aws test unit quick lint tools bench bench-lambda clean fuzz fuzz-smoke
.DEFAULT_GOAL := help

# make alone lists the targets: it never starts a server.
help:
	@echo 'make run          the whole API on https://127.0.0.1:8443 (embedded store, local key, dev CA in .capif-local/)'
	@echo 'make run-aws      the same on DynamoDB Local and local-kms, started and stopped with it'
	@echo 'make test         lint, every test with the pinned peers (installed into .tools/), a short fuzz run'
	@echo 'make quick        go test -short: no peers, the inner loop'
	@echo 'make unit         every test that needs no peer'
	@echo 'make lint         gofmt, go vet, staticcheck'
	@echo 'make fuzz         every fuzz target for 200,000 inputs (FUZZ_LONG=2000000x for longer)'
	@echo 'make bench        the handler ratios, then every benchmark with the peers up'
	@echo 'make bench-lambda the token function under the Lambda emulator, per signer, into BENCHMARKS.md'
	@echo 'make build-lambdas  the six Lambda bootstraps into bin/lambda/ (what sam build makes)'
	@echo 'make deploy       sam build and sam deploy (first time: make deploy DEPLOY_FLAGS=--guided)'
	@echo 'make clean        remove bin/ and .aws-sam/'
	@echo 'RUN_FLAGS adds runner flags to make run and make run-aws (README: Runner flags).' 

# make run / run-aws build the runner, then exec it: no `go run` in between (it dies on SIGTERM
# and leaves its child holding the port and the store lock), so Ctrl-C and SIGTERM to make (which
# make passes on) reach the runner, which shuts down cleanly. RUN_FLAGS adds runner flags.
RUN_FLAGS ?=
run:
	$(GO) build -o bin/capif-local ./cmd/capif-local
	exec bin/capif-local -registry examples/registry.json $(RUN_FLAGS)

# The runner on the AWS back ends, locally: DynamoDB Local and local-kms started for the session
# and stopped with it (with-peers.sh --serve: Ctrl-C is its normal end). TOKEN_ALG=RS256 signs
# with an RSA_2048 key.
TOKEN_ALG ?= ES256
run-aws: tools
	$(GO) build -o bin/capif-local ./cmd/capif-local
	$(GO) build -o bin/kmskey ./internal/cmd/kmskey
	bash scripts/with-peers.sh --serve bash -c 'key=$$(bin/kmskey $(TOKEN_ALG)) && \
	  exec bin/capif-local -store dynamodb -signer kms -kms-key-ids "$$key" -token-alg $(TOKEN_ALG) -create-tables -allow-loopback-notifications -registry examples/registry.json $(RUN_FLAGS)'

# The full suite: DynamoDB Local, local-kms and the Lambda RIE are installed (pinned, idempotent)
# and started on free loopback ports for the duration of the run.
test: lint tools
	bash scripts/with-peers.sh $(GO) test -count=1 ./...
	$(MAKE) --no-print-directory fuzz-smoke

# Every fuzz target, found in the packages whose tests declare one (go test -list), each fuzzed
# for FUZZTIME on top of its committed seed corpus (testdata/fuzz/). `make test` gives each 5,000
# inputs: a count, not a duration, because Go 1.26's fuzz coordinator can fail a run at the end of
# a -fuzztime duration with "context deadline exceeded" and no crasher (golang/go#75804, fixed in
# Go 1.27). `make fuzz` gives each 200,000 (FUZZ_LONG=2000000x), a count for the same reason.
FUZZTIME ?= 5000x
fuzz-smoke:
	@set -e; for dir in $$(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | xargs -n1 dirname | sort -u); do \
		for fn in $$($(GO) test -list '^Fuzz' ./$$dir | grep '^Fuzz'); do \
			echo "fuzz $$fn (./$$dir) for $(FUZZTIME)"; \
			log=$$(mktemp); \
			$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$dir >$$log 2>&1 || { cat $$log; rm -f $$log; exit 1; }; \
			rm -f $$log; \
		done; \
	done
FUZZ_LONG ?= 200000x
fuzz:
	$(MAKE) --no-print-directory fuzz-smoke FUZZTIME=$(FUZZ_LONG)

# The tiers below make test. unit: every test that runs without the peers (the peer tests skip
# with their reason, or fail under CI=true). quick: the inner loop, unit under -short (no host
# bootstrap builds, no stress loops).
unit:
	$(GO) test ./...

quick:
	$(GO) test -short ./...

# gofmt, go vet and staticcheck (pinned by go.mod's tool directive).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

tools:
	bash scripts/tools.sh

# The budgets as ratios to a bare P-256 signature (scripts/bench-ratios.sh), then every
# benchmark of the module with the peers up.
bench: tools
	GO=$(GO) bash scripts/bench-ratios.sh
	bash scripts/with-peers.sh $(GO) test -run '^$$' -bench . -benchmem ./...

# The token function's bootstrap under the Lambda emulator, for each signer (kms and
# kms-envelope, ES256 and RS256): warm p50/p99 over 1,000 tokens, 10 cold starts, CPU per token;
# the table is rewritten in BENCHMARKS.md between its bench-lambda markers.
bench-lambda: tools
	bash scripts/with-peers.sh $(GO) test -count=1 -run '^TestLambdaTokenLatency$$' -v ./tests/lambda -args -bench-lambda

clean:
	rm -rf bin .aws-sam

# --- Lambda (SAM) ---------------------------------------------------------------------------
# template.yaml builds every function with `Metadata: BuildMethod: makefile` and `CodeUri: .`:
# `sam build` runs `make build-<LogicalId>` here with ARTIFACTS_DIR set. See docs/deploy.md.
#   make build-lambdas   the six bootstraps into bin/lambda/<LogicalId>/ (what sam build makes)
#   make invoke FN=<LogicalId> EVENT=events/<...>.json [LOCAL_KMS_KEY_ID=<id>: ObtainAuthorizationFunction]
#                        (the worker: FN=DeliverNotificationsFunction EVENT=events/deliver-notifications/schedule.json)
#                        sam local invoke (Docker) against DynamoDB Local + local-kms on this host
#   make deploy          sam build + sam deploy (first time: make deploy DEPLOY_FLAGS=--guided)
.PHONY: build-lambdas invoke deploy build-ObtainSecurityMethodFunction build-ObtainAuthorizationFunction \
	build-ObtainApiInvokerInfoFunction build-RevokeAuthorizationFunction build-DeliverNotificationsFunction \
	build-RotateSigningKeysFunction

LAMBDA_GOARCH    ?= arm64
LAMBDA_MAX_BYTES := 10485760
LAMBDA_BIN       := bin/lambda

# lambda-build PACKAGE-DIR: one static, stripped bootstrap for provided.al2023 into
# $(ARTIFACTS_DIR), refused when over the 10 MiB budget (issue 11).
define lambda-build
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set: sam build sets it; locally use make build-lambdas))
	GOOS=linux GOARCH=$(LAMBDA_GOARCH) CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags="-s -w" \
		-o "$(ARTIFACTS_DIR)/bootstrap" ./functions/$(1)
	@size=$$(wc -c <"$(ARTIFACTS_DIR)/bootstrap"); \
	if [ "$$size" -gt $(LAMBDA_MAX_BYTES) ]; then \
		echo "$(ARTIFACTS_DIR)/bootstrap: $$size bytes, over the $(LAMBDA_MAX_BYTES)-byte budget" >&2; \
		rm -f "$(ARTIFACTS_DIR)/bootstrap"; exit 1; \
	fi; echo "$(ARTIFACTS_DIR)/bootstrap: $$size bytes"
endef

build-ObtainSecurityMethodFunction:
	$(call lambda-build,obtain-security-method)
build-ObtainAuthorizationFunction:
	$(call lambda-build,obtain-authorization)
build-ObtainApiInvokerInfoFunction:
	$(call lambda-build,obtain-invoker-info)
build-RevokeAuthorizationFunction:
	$(call lambda-build,revoke-authorization)
build-DeliverNotificationsFunction:
	$(call lambda-build,deliver-notifications)
build-RotateSigningKeysFunction:
	$(call lambda-build,rotate-signing-keys)

build-lambdas:
	@for fn in ObtainSecurityMethodFunction ObtainAuthorizationFunction ObtainApiInvokerInfoFunction RevokeAuthorizationFunction \
		DeliverNotificationsFunction RotateSigningKeysFunction; do \
		$(MAKE) --no-print-directory build-$$fn ARTIFACTS_DIR="$(CURDIR)/$(LAMBDA_BIN)/$$fn" || exit 1; \
	done

# Local invoke: a separate build dir (never deployed) that also carries the development CA as
# the truststore file; dummy credentials, so nothing can reach an AWS account. DynamoDB Local and
# local-kms must run on this host with the tables, the registry and a P-256 key (docs/deploy.md).
LOCAL_REGION       ?= us-east-1
LOCAL_HOST         ?= host.docker.internal
LOCAL_DDB_PORT     ?= 8000
LOCAL_KMS_PORT     ?= 4599
LOCAL_TABLE_PREFIX ?= capif-local-
LOCAL_KMS_KEY_ID   ?=
LOCAL_BUILD        := .aws-sam/local
# The template's required parameters, with values that pass their AllowedPattern (nothing is
# deployed; the version is not read: env.json gives no truststore URI and no version).
LOCAL_PARAMS       := DomainName=capif.localhost \
	CertificateArn=arn:aws:acm:$(LOCAL_REGION):000000000000:certificate/00000000-0000-4000-8000-000000000000 \
	TruststoreUri=s3://local-truststore/dev-ca.pem TruststoreVersion=local
invoke:
	@[ -n "$(FN)" ] && [ -n "$(EVENT)" ] && { [ "$(FN)" != ObtainAuthorizationFunction ] || [ -n "$(LOCAL_KMS_KEY_ID)" ]; } || { \
		echo "usage: make invoke FN=<LogicalId> EVENT=events/<function>/<case>.json [LOCAL_KMS_KEY_ID=<local-kms key id>]" >&2; exit 2; }
	sam build --build-dir $(LOCAL_BUILD) --build-in-source \
		--parameter-overrides $(LOCAL_PARAMS)
	cp events/dev-ca/ca.pem $(LOCAL_BUILD)/$(FN)/dev-ca.pem
	printf '%s\n' '{"Parameters": {' \
		'"CAPIF_CONTEXTS_TABLE": "$(LOCAL_TABLE_PREFIX)contexts", "CAPIF_REGISTRY_TABLE": "$(LOCAL_TABLE_PREFIX)registry",' \
		'"CAPIF_OUTBOX_TABLE": "$(LOCAL_TABLE_PREFIX)outbox", "CAPIF_KMS_KEY_IDS": "$(LOCAL_KMS_KEY_ID)",' \
		'"CAPIF_TRUSTSTORE_URI": "", "CAPIF_TRUSTSTORE_VERSION": "", "CAPIF_TRUSTSTORE_FILE": "/var/task/dev-ca.pem",' \
		'"AWS_ENDPOINT_URL_DYNAMODB": "http://$(LOCAL_HOST):$(LOCAL_DDB_PORT)",' \
		'"AWS_ENDPOINT_URL_KMS": "http://$(LOCAL_HOST):$(LOCAL_KMS_PORT)"}}' >$(LOCAL_BUILD)/env.json
	env -u AWS_PROFILE -u AWS_SESSION_TOKEN AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=$(LOCAL_REGION) \
		sam local invoke $(FN) --template $(LOCAL_BUILD)/template.yaml --event $(EVENT) \
		--env-vars $(LOCAL_BUILD)/env.json --add-host $(LOCAL_HOST):host-gateway \
		--parameter-overrides $(LOCAL_PARAMS)

deploy:
	sam build
	sam deploy $(DEPLOY_FLAGS)
