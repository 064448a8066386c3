# databus — see README.md.
GO      ?= go
BIN     := bin/databus
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build test test-short soak demo demo-ha lint bench fuzz charsets ddl-corpus clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/databus

# Every test, unit and integration (throwaway mariadbd + embedded JetStream,
# the consumers of examples/ with node and the nats CLI).
test:
	scripts/ensure-mariadb.sh
	scripts/ensure-examples.sh
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

# The crash harness (cmd/databus/crash_test.go) for longer: 200 random
# kill -9 and restarts of databus run, databus apply, the source mariadbd
# and nats-server under load, then exact comparison of source and target.
# `make test` runs it with 8 cycles. CRASH_SEED=N repeats a run.
# Then the HA harness (cmd/databus/ha_test.go) for HA_CYCLES cycles: kill -9
# of the capture leader node, SIGSTOP of it past its lease, kill -9 of a
# standby, in a three-node cluster under load (`make test` runs 3).
CRASH_CYCLES ?= 200
HA_CYCLES ?= 30
soak:
	scripts/ensure-mariadb.sh
	CRASH_CYCLES=$(CRASH_CYCLES) $(GO) test -count=1 -run '^TestCrashHarness$$' -timeout 2h -v ./cmd/databus
	HA_CYCLES=$(HA_CYCLES) $(GO) test -count=1 -run '^TestHAHarness$$' -timeout 2h -v ./cmd/databus

# Re-read the embedded character set tables (internal/charset/tables) off
# a throwaway mariadbd: the server's own conversion of every byte sequence
# is the reference. make test checks the tables against the server.
charsets:
	scripts/ensure-mariadb.sh
	$(GO) test -count=1 -run '^TestDecodeAgreesWithTheServer$$' ./internal/charset -update

# The DDL corpus harness (internal/ddl/corpus_test.go) on every script of
# MariaDB's own test suite (package mariadb-test): each CREATE TABLE and
# ALTER TABLE that runs on a plain server runs on a source, is qualified as
# capture publishes it and runs on a target, and SHOW CREATE TABLE must be
# equal on both. make test runs it on internal/ddl/testdata/corpus.test.
# The differences go to ddl-corpus-report.txt.
DDL_CORPUS ?= /usr/share/mysql/mysql-test
DDL_CORPUS_WORKERS ?= 2
ddl-corpus:
	scripts/ensure-mariadb.sh --test-suite
	DDL_CORPUS=$(DDL_CORPUS) DDL_CORPUS_WORKERS=$(DDL_CORPUS_WORKERS) DDL_CORPUS_REPORT=$(CURDIR)/ddl-corpus-report.txt \
		$(GO) test -count=1 -run '^TestDDLCorpus$$' -timeout 4h -v ./internal/ddl

# Unit tests only: no MariaDB needed (-short skips, by name, every test that
# starts a mariadbd; make test runs them all).
test-short:
	$(GO) test -count=1 -short ./...

# Throwaway MariaDB + databus with embedded NATS + a small write load +
# `databus tail` printing the events.
demo: build
	scripts/ensure-mariadb.sh
	scripts/demo.sh

# Three databus run nodes on localhost as one JetStream cluster, a write
# load, kill -9 of the capture leader and the takeover (docs/ha.md).
demo-ha: build
	scripts/ensure-mariadb.sh
	scripts/demo-ha.sh

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Longer fuzzing of the subject token and SQL literal encoders (the literal
# fuzzer talks to a throwaway mariadbd). New corpus entries land in the Go
# cache; copy interesting ones to the package's testdata/fuzz to keep them.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzToken -fuzztime 60s ./sdk
	$(GO) test -run '^$$' -fuzz FuzzDecodeEvent -fuzztime 60s ./sdk
	$(GO) test -run '^$$' -fuzz FuzzLiterals -fuzztime 120s ./internal/rowcodec

# The benchmark harness (internal/bench): limits of this machine, databus
# streaming, latency, SDK consumption and memory; recorded in
# docs/performance.md.
bench:
	scripts/ensure-mariadb.sh
	scripts/bench.sh

clean:
	rm -rf bin demo-data demo-ha-data
