# dispatcher — build, test and check. `make help` lists the targets.

GO          ?= go
BIN         ?= dispatcher
PKG         := github.com/dispatcher-dev/dispatcher
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -s -w -X $(PKG)/roles/internal/cmdutil.Version=$(VERSION) -X $(PKG)/roles/internal/cmdutil.Commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
ROLES       := dispatcher-agent dispatcher-api dispatcher-pairing
FUZZTIME    ?= 20s
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can
# fail a healthy target with "context deadline exceeded" as time runs out
# (golang/go#75804), which a short run on a loaded machine hits.
FUZZSHORT   ?= 300x
FUZZPARALLEL ?= 2

.PHONY: all build links test check vet fmt staticcheck tidy demo fuzz fuzz-short bench clean help

all: build

help:
	@echo "make build        static binary ./$(BIN) (CGO_ENABLED=0, -trimpath, version from git)"
	@echo "make links        role symlinks next to the binary ($(ROLES))"
	@echo "make test         go test -race ./..., then the memory-checking scripts without -race"
	@echo "make check        go vet, gofmt, staticcheck, go mod tidy -diff, fuzz-short"
	@echo "make demo         build, then run 'dispatcher demo'"
	@echo "make fuzz         run every fuzz target for FUZZTIME each (default $(FUZZTIME))"
	@echo "make fuzz-short   run every fuzz target for FUZZSHORT inputs each (default $(FUZZSHORT)); part of check"
	@echo "                  (both use FUZZPARALLEL workers, default $(FUZZPARALLEL); a failing input is"
	@echo "                  written to PACKAGE/testdata/fuzz/TARGET/ and fails the run)"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

links: build
	@for r in $(ROLES); do ln -sfn $(BIN) $$r; echo "$$r -> $(BIN)"; done

# The race detector multiplies memory use, so the scripts that check peak
# memory (hostile_exec, hostile_output) check it in a second pass without it.
test:
	$(GO) test -race ./...
	$(GO) test -run '^TestScripts$$/^hostile_(exec|output)$$' .

check: vet fmt staticcheck tidy fuzz-short

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

staticcheck:
	$(GO) run $(STATICCHECK) ./...

tidy:
	$(GO) mod tidy -diff

demo: build
	./$(BIN) demo

# run-fuzz runs every fuzz target of the module for $(1) each, one after
# the other: go test allows one -fuzz pattern per package. The targets are
# read from each package's test files, so listing them builds nothing. The
# first failure stops the run with a non-zero exit; go test has then written
# the failing input to PACKAGE/testdata/fuzz/TARGET/.
define run-fuzz
	@files=$$($(GO) list -f '{{$$d := .Dir}}{{range .TestGoFiles}}{{$$.ImportPath}} {{$$d}}/{{.}}{{"\n"}}{{end}}{{range .XTestGoFiles}}{{$$.ImportPath}} {{$$d}}/{{.}}{{"\n"}}{{end}}' ./...) || exit 1; \
	set -- $$(echo "$$files" | while read pkg file; do [ -z "$$file" ] || sed -n "s|^func \(Fuzz[A-Za-z0-9_]*\)(.*|$$pkg \1|p" "$$file"; done); \
	[ $$# -gt 0 ] || { echo "no fuzz targets found" >&2; exit 1; }; \
	start=$$(date +%s); n=0; \
	while [ $$# -gt 0 ]; do \
	  echo "== $$1 $$2 ($(1))"; \
	  $(GO) test -run '^$$' -fuzz "^$$2$$" -fuzztime $(1) -parallel $(FUZZPARALLEL) $$1 || \
	    { echo "fuzz: $$2 in $$1 failed (a new failing input is saved in that package's testdata/fuzz/$$2/)" >&2; exit 1; }; \
	  n=$$((n + 1)); shift 2; \
	done; \
	echo "fuzz: $$n targets, $(1) each, $$(($$(date +%s) - start))s"
endef

fuzz:
	$(call run-fuzz,$(FUZZTIME))

fuzz-short:
	$(call run-fuzz,$(FUZZSHORT))

clean:
	rm -f $(BIN) $(ROLES)
