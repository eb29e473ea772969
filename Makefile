# deltaplane: build, run and test without Docker.
#   make run         Kafka + Postgres + admin-api + sync-gateway + 2 dataplanes
#   make test        unit, integration and e2e tests on real Kafka and Postgres
#   make bench       benchmarks (see docs/benchmarks/)
#   make chaos       randomized faults under a randomized workload, judged by
#                    e2e/checker (SEED=, DURATION=; default random, 3m)
#   make test-cluster  broker failures on a 3-broker cluster (BROKER_DOWN=3m)
#   make vulncheck   govulncheck over every module (local database, no vuln.go.dev)

SHELL := /bin/bash
MODULES := shared services/admin-api services/sync-gateway services/dataplane e2e examples
SERVICES := admin-api sync-gateway dataplane
GO ?= go
# Go 1.26.10 fixes the standard library's known vulnerabilities in code we
# call (make vulncheck); the go command fetches it from the module proxy.
export GOTOOLCHAIN ?= go1.26.10
GOTEST_FLAGS ?= -count=1 -timeout 25m
INFRA := deployments/local/infra.sh

.PHONY: all build deps infra-up infra-down run run-secure test-secure test test-unit test-integration test-e2e bench bench-quick bench-go bench-system chaos test-cluster vulncheck fuzz-openapi screenshot check-modules vet fmt tidy clean

all: build

build:
	@mkdir -p bin
	@for s in $(SERVICES); do (cd services/$$s && $(GO) build -o ../../bin/$$s .) || exit 1; done
	@echo "built: $(addprefix bin/,$(SERVICES))"

# Everything a fresh Debian machine needs beyond Go, Java and Maven.
deps:
	deployments/local/postgres.sh install
	deployments/local/redis.sh install
	deployments/local/kafka.sh fetch
	@for m in $(MODULES); do (cd $$m && $(GO) mod download) || exit 1; done

infra-up:
	$(INFRA) up

infra-down:
	$(INFRA) down

run: build
	deployments/local/run.sh

# The secured system (docs/security.md): test CA and per-service
# certificates, Kafka with mutual TLS and ACLs, Postgres and admin-api on TLS.
run-secure: build
	deployments/local/run-secure.sh

# The Go line and every dependency shared by two modules must be identical.
check-modules:
	@deployments/local/check-modules.sh $(MODULES)

vet:
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./... && $(GO) vet -tags integration ./... && $(GO) vet -tags e2e ./...) || exit 1; done

fmt:
	@bad=$$(gofmt -l $(MODULES)); if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi

tidy:
	@for m in $(MODULES); do (cd $$m && GOWORK=off $(GO) mod tidy) || exit 1; done

test-unit:
	@for m in $(MODULES); do (cd $$m && $(GO) test $(GOTEST_FLAGS) ./...) || exit 1; done

test-integration:
	@for m in $(MODULES); do (cd $$m && $(GO) test $(GOTEST_FLAGS) -tags integration ./...) || exit 1; done

test-e2e: build
	cd e2e && $(GO) test $(GOTEST_FLAGS) -tags e2e -v . 2>&1 | tee ../.local/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}

# The secured broker's tests (ACL refusals, forged heartbeats, TLS end to
# end): they start and stop a private secured broker and TLS Postgres.
test-secure:
	@mkdir -p .local
	cd e2e && $(GO) test $(GOTEST_FLAGS) -tags e2e -v ./secure/ 2>&1 | tee ../.local/secure.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}

# make test starts the infrastructure it needs and stops what it started.
test: check-modules fmt vet vulncheck
	$(INFRA) run -- $(MAKE) --no-print-directory test-unit test-integration test-e2e test-secure bench-system BENCH_FLAGS="$(BENCH_QUICK)" BENCH_OUT=.local/bench-quick

# The property-based OpenAPI fuzzer (schemathesis, installed by .ci/run)
# against admin-api on the real Postgres and Kafka: e2e's TestOpenAPIFuzz,
# also part of test-e2e. FUZZ_EXAMPLES= per operation (20), FUZZ_SEED= (1).
fuzz-openapi:
	$(INFRA) run -- bash -c 'cd e2e && $(GO) test $(GOTEST_FLAGS) -tags e2e -run "^TestOpenAPIFuzz$$" -v .'

# The cluster page's screenshot in the README: e2e's browser test
# (headless chromium) with DELTAPLANE_UI_SCREENSHOT set.
screenshot:
	$(INFRA) run -- bash -c 'cd e2e && DELTAPLANE_UI_SCREENSHOT=$(CURDIR)/docs/cluster-page.png $(GO) test $(GOTEST_FLAGS) -tags e2e -run "^TestClusterPageInBrowser$$" -v .'

# govulncheck over every module, with a database built from the
# golang.org/x/vulndb module's OSV data (deployments/local/vulncheck.sh);
# accepted findings and why: deployments/local/vuln-accepted.txt.
vulncheck:
	deployments/local/vulncheck.sh $(MODULES)

# Broker failures on a 3-broker cluster under continuous writes (e2e tag
# cluster): kill -9 the leader of cp.changes, a rolling restart, one broker
# down for BROKER_DOWN. make test runs the kill -9 of dp.deltas' leader.
BROKER_DOWN ?= 3m
test-cluster: build
	@mkdir -p .local
	$(INFRA) run -- bash -c 'cd e2e && BROKER_DOWN=$(BROKER_DOWN) $(GO) test $(GOTEST_FLAGS) -tags e2e,cluster -run "^TestBroker" -v . 2>&1 | tee ../.local/test-cluster.log | grep -E "^(=== RUN|--- |PASS|FAIL|ok|panic)|broker fault|lost"; exit $${PIPESTATUS[0]}'

# Chaos: the whole system under a randomized workload and overlapping faults
# (kill -9, SIGSTOP, broker kill, Postgres immediate stop, TCP cuts, latency,
# half-open connections), judged by e2e/checker. The seed replays the run.
ifeq ($(origin SEED),undefined)
SEED := $(shell echo $$((RANDOM * 32768 + RANDOM)))
endif
DURATION ?= 3m

chaos: build
	@echo "chaos: seed $(SEED), duration $(DURATION); replay with: make chaos SEED=$(SEED) DURATION=$(DURATION)"
	@mkdir -p .local
	$(INFRA) run -- bash -c 'cd e2e && CHAOS_SEED=$(SEED) CHAOS_DURATION=$(DURATION) $(GO) test $(GOTEST_FLAGS) -tags e2e -run "^TestChaos$$" -v . 2>&1 | tee ../.local/chaos.log; exit $${PIPESTATUS[0]}'

# The system benchmark: incremental versus full sync, side by side, on the
# real system, with every row of issue 10's targets table. Flags:
# BENCH_FLAGS="-entities 30000 -dataplanes 2 ...". The full run needs
# wrk, nginx and etcd-server (apt-get install wrk nginx etcd-server);
# bench-quick (run by make test) needs none of them.
BENCH_FLAGS ?= -entities 30000 -bootstrap 30000,100000,1000000 -dataplanes 2 -changes 100 -rate 10 -proxy-duration 10s -churn 20 \
	-writers 8 -write-duration 10s -wrk-duration 10s -etcd -etcd-watchers 2 -large-changes 50 -heap -boot-timeout 10m \
	-fleet 100 -fleet-entities 10000 -fleet-changes 50 -fleet-rate 5 -followers 1000
BENCH_QUICK := -entities 2000 -bootstrap 2000,5000 -dataplanes 2 -changes 20 -rate 20 -proxy-duration 3s -churn 20 \
	-write-duration 1s -large-changes 5 -idle-window 1s -fleet 2 -fleet-entities 1000 -fleet-changes 3 -followers 10
BENCH_OUT ?= docs/benchmarks

bench:
	$(INFRA) run -- $(MAKE) --no-print-directory bench-go bench-system

bench-quick:
	$(INFRA) run -- $(MAKE) --no-print-directory bench-system BENCH_FLAGS="$(BENCH_QUICK)" BENCH_OUT=.local/bench-quick

bench-system:
	cd e2e && $(GO) run ./cmd/bench -repo .. -out ../$(BENCH_OUT) $(BENCH_FLAGS)

# Go micro- and component benchmarks of every module.
bench-go:
	@mkdir -p .local
	@for m in $(MODULES); do (cd $$m && $(GO) test -run '^$$' -bench . -benchmem -tags integration ./...) || exit 1; done 2>&1 | tee .local/bench-go.txt

clean:
	rm -rf bin .local
