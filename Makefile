# CAPIF_Security_API — see README.md.
#   make run    the whole API locally (embedded store, local key, dev CA in .capif-local/)
#   make test   every test: installs the pinned test peers into .tools/ and starts them itself
SHELL := /bin/bash
GO    ?= go

.PHONY: run test unit lint tools bench clean

run:
	$(GO) run ./cmd/capif-local -registry examples/registry.json

# The full suite: DynamoDB Local, local-kms and the Lambda RIE are installed (pinned, idempotent)
# and started on free loopback ports for the duration of the run.
test: lint tools
	bash scripts/with-peers.sh $(GO) test -count=1 ./...

# Unit tests only: what runs without the peers (peer tests skip, or fail under CI=true).
unit:
	$(GO) test ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

tools:
	bash scripts/tools.sh

bench: tools
	bash scripts/with-peers.sh $(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin .aws-sam
