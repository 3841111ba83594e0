# jerichoci — see README.md. `make check` is exactly what CI runs.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(BIN)/staticcheck
export GOFLAGS ?= -buildvcs=auto

.PHONY: all build test unit check fmt-check vet staticcheck tidy-check imports-check bench stall-check fuzz soak run demo demo-local incus-up nix-up nix-current-up chromium-up hostjobs-up incus-down reset clean

all: build

# The guest runner goes into the runner images, which have no libc: static.
build:
	$(GO) build -o $(BIN)/jerichoci ./cmd/jerichoci
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags='-s -buildid=' -o $(BIN)/pikaci-incus-run ./cmd/pikaci-incus-run

NATS_SERVER := $(BIN)/nats-server

# The daemon's integration tests run a separate nats-server process of
# go.mod's version (test/daemon's TestMain also builds it when missing).
$(NATS_SERVER): go.mod
	$(GO) build -o $@ github.com/nats-io/nats-server/v2

# Tests need a running incusd with the runner images: incus-up installs and
# starts what is missing (idempotent, fast when all is in place).
# nix-current-up after nix-up: the current Nix is a client of nix-up's
# daemon; the tests that take it fail under CI without it (testenv).
# Figures passing tests measured (recovery times of the partition tests,
# the load's spread) go to TEST_REPORT (itest.Report) and are printed
# after the tests, pass or fail: go test shows nothing of a passing package.
TEST_REPORT := $(CURDIR)/bin/test-report.txt

test: incus-up nix-up nix-current-up chromium-up hostjobs-up $(NATS_SERVER)
	@mkdir -p bin && rm -f $(TEST_REPORT)
	@status=0; JERICHOCI_TEST_REPORT=$(TEST_REPORT) $(GO) test -race -count=1 -timeout 45m ./... || status=$$?; \
		echo "== figures the tests reported ($(TEST_REPORT)):"; cat $(TEST_REPORT) 2>/dev/null || echo "(none)"; exit $$status

check: fmt-check vet staticcheck tidy-check imports-check test

# The developers' fast path: the tests that need only Go (go test -short),
# no incusd, no nats-server process, no Nix, nothing installed. A test
# that needs more says so and is skipped (internal/testenv); make check
# runs it, and fails it in CI when its prerequisite is missing.
unit:
	$(GO) test -short -count=1 -timeout 5m ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

tidy-check:
	@cp go.mod /tmp/jerichoci-go.mod.bak; cp go.sum /tmp/jerichoci-go.sum.bak; \
	$(GO) mod tidy; \
	if ! git diff --quiet -- go.mod go.sum || ! cmp -s go.mod /tmp/jerichoci-go.mod.bak || ! cmp -s go.sum /tmp/jerichoci-go.sum.bak; then \
		diff -u /tmp/jerichoci-go.mod.bak go.mod; diff -u /tmp/jerichoci-go.sum.bak go.sum; \
		cp /tmp/jerichoci-go.mod.bak go.mod; cp /tmp/jerichoci-go.sum.bak go.sum; \
		echo "go mod tidy would change go.mod/go.sum: run it and commit"; exit 1; fi

imports-check:
	@bash scripts/check-imports

# Go benchmarks (each with a baseline measured in the same run), then one
# job end to end against the incus CLI doing the same work.
bench: incus-up build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bash scripts/bench-incus
	bash scripts/bench-pool
	bash scripts/bench-daemon
	bash scripts/collect-bench
	$(GO) run ./test/bench/firstbyte

# Go native fuzzing of the decoders (job spec, run and image records,
# catalog file, Incus response envelope), one target at a time for FUZZTIME
# each, with a summary line per target (scripts/fuzz). A crasher is left in
# the package's testdata/fuzz/FuzzX/ as a regression seed; plain `go test`
# runs every seed.
FUZZTIME ?= 30s

fuzz:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz

# The daemon's soak benchmark, not a CI test (scripts/soak): one nats-server,
# three daemons, SOAK_JOBS (500) trivial jobs, a random daemon killed with
# kill -9 every SOAK_KILL_EVERY (8s) and restarted, bounded by SOAK_TIMEOUT
# (40m); exits 1 on a lost or duplicated job or a leaked instance. Figures
# in docs/RELIABILITY.md ("Soak").
soak: incus-up build $(NATS_SERVER)
	@GO=$(GO) bash scripts/soak

# Bursts through fresh daemons (scripts/stall-check): 20 series of 10
# bursts of 5 jobs, every core kept busy; fails on a prepare_runtime over
# 5 s or an Incus operation wait that reached its long-poll limit.
stall-check: incus-up build
	@STALL_LOAD=$${STALL_LOAD:-1} bash scripts/stall-check

incus-up:
	@bash scripts/incus-up

# Nix for staged prepared outputs and host-local jobs (Debian's nix-bin).
nix-up:
	@bash scripts/nix-up

# Debian 13's Nix (2.26) beside it, a client of the same daemon, so that
# staged builds and dev shells are tested with both (docs/INCUS.md).
nix-current-up: nix-up
	@bash scripts/nix-current-up

# Debian's chromium for the status page's headless browser test.
chromium-up:
	@bash scripts/chromium-up

# The unprivileged user serve runs host-local jobs as (serve --host-jobs-user).
hostjobs-up:
	@bash scripts/hostjobs-up

incus-down:
	@bash scripts/incus-down

# Take away what incus-up, nix-up, chromium-up and hostjobs-up installed (asks first;
# refused under CI), so that the next `make check` starts as on a new
# machine: scripts/reset-machine --yes skips the question.
reset:
	@bash scripts/reset-machine

# The daemon as README describes it: staged builds and host-local jobs on,
# so pika's lanes run (docs/SECURITY.md says what each opens). It
# publishes its daemon file, so enqueue, cancel and logs --follow find it
# from any directory. SERVE_FLAGS= runs guest jobs only.
SERVE_FLAGS ?= --allow-staged-builds --allow-host-jobs

run: incus-up nix-up hostjobs-up build
	$(BIN)/jerichoci serve $(SERVE_FLAGS)

# The demo lanes through the daemon: serve on embedded NATS, enqueue the
# four lanes, check that each ended as designed, stop. Its daemon takes free
# ports (DEMO_NATS_LISTEN, DEMO_HTTP_LISTEN) and publishes no daemon file,
# so it runs next to `make run`.
demo: incus-up build
	@bash scripts/demo-daemon

# The same lanes run one by one with `jerichoci run`, no daemon.
demo-local: incus-up build
	@bash scripts/demo

clean:
	rm -rf $(BIN)
