# invalidator — `make help` lists the targets.
GO          ?= go
BIN         ?= bin/invalidator
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS        ?= ./...
# Stamped into the binary by `make build`: `invalidator version` prints them.
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT      ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS     ?= -X main.buildVersion=$(VERSION) -X main.buildCommit=$(COMMIT)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/invalidator, stamped with VERSION (git describe) and COMMIT
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/invalidator

.PHONY: demo
demo: ## 20 s of the whole stack: embedded Redis, worker, dashboard, metrics, a workload (needs only Go)
	$(GO) run ./cmd/invalidator dev --workload --duration $(or $(DURATION),20s)

.PHONY: test
test: check-redis check-postgres ## go vet + all tests with the race detector (needs redis-server; postgresql optional)
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

.PHONY: lint
lint: ## go vet + staticcheck (config: staticcheck.conf)
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

.PHONY: fuzz
fuzz: ## run each fuzz target FUZZTIME (default 200000x: count-based, see golang/go#75804)
	$(GO) test -run='^$$' -fuzz='^FuzzUnmarshal$$' -fuzztime=$(or $(FUZZTIME),200000x) ./tasks/
	$(GO) test -run='^$$' -fuzz='^FuzzRoundTrip$$' -fuzztime=$(or $(FUZZTIME),200000x) ./tasks/
	$(GO) test -run='^$$' -fuzz='^FuzzParseTemplate$$' -fuzztime=$(or $(FUZZTIME),200000x) ./keyspec/
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(or $(FUZZTIME),200000x) ./keyspec/
	$(GO) test -run='^$$' -fuzz='^FuzzParamMatch$$' -fuzztime=$(or $(FUZZTIME),200000x) ./keyspec/
	$(GO) test -run='^$$' -fuzz='^FuzzParseKey$$' -fuzztime=$(or $(FUZZTIME),200000x) ./keyspec/
	$(GO) test -run='^$$' -fuzz='^FuzzAuditQuery$$' -fuzztime=$(or $(FUZZTIME),200000x) ./keyspec/
	$(GO) test -run='^$$' -fuzz='^FuzzParseVersionKey$$' -fuzztime=$(or $(FUZZTIME),200000x) ./keyspec/
	$(GO) test -run='^$$' -fuzz='^FuzzIsShardQueue$$' -fuzztime=$(or $(FUZZTIME),200000x) ./keyspec/
	$(GO) test -run='^$$' -fuzz='^FuzzParseHumanDuration$$' -fuzztime=$(or $(FUZZTIME),200000x) ./keyspec/
	$(GO) test -run='^$$' -fuzz='^FuzzParseRecord$$' -fuzztime=$(or $(FUZZTIME),200000x) ./worker/
	$(GO) test -run='^$$' -fuzz='^FuzzRedact$$' -fuzztime=$(or $(FUZZTIME),200000x) ./internal/redisconn/
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(or $(FUZZTIME),200000x) ./cacheaside/
	$(GO) test -run='^$$' -fuzz='^FuzzReadKeys$$' -fuzztime=$(or $(FUZZTIME),200000x) ./cmd/invalidator/
	$(GO) test -run='^$$' -fuzz='^FuzzParseParams$$' -fuzztime=$(or $(FUZZTIME),200000x) ./cmd/invalidator/
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(or $(FUZZTIME),200000x) ./cdc/

.PHONY: check-redis
check-redis: # tests start their own redis-server; make sure there is one
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server not found: the tests start a private one on a free port."; \
	  echo "Install it: apt-get install redis-server (Debian/Ubuntu) or brew install redis (macOS),"; \
	  echo "or point INVALIDATOR_TEST_REDIS_URL at a Redis the tests may flush."; \
	  [ -n "$$INVALIDATOR_TEST_REDIS_URL" ]; }

.PHONY: check-postgres
check-postgres: # the PostgreSQL tests start a private server; say so when they will skip
	@{ ls /usr/lib/postgresql/*/bin/initdb || command -v initdb || [ -n "$$INVALIDATOR_TEST_PG_BINDIR" ]; } >/dev/null 2>&1 || { \
	  echo "note: PostgreSQL server binaries (initdb, postgres) not found: the PostgreSQL tests will skip"; \
	  echo "(with CI set they fail). Install them: apt-get install postgresql (Debian/Ubuntu) or brew install postgresql (macOS),"; \
	  echo "or set INVALIDATOR_TEST_PG_BINDIR to their directory. The tests never use a server already running."; }

.PHONY: clean
clean: ## remove build output
	rm -rf bin
