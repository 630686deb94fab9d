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

.PHONY: all build links test check vet fmt staticcheck tidy demo fuzz bench clean help

all: build

help:
	@echo "make build        static binary ./$(BIN) (CGO_ENABLED=0, -trimpath, version from git)"
	@echo "make links        role symlinks next to the binary ($(ROLES))"
	@echo "make test         go test -race ./..."
	@echo "make check        go vet, gofmt, staticcheck, go mod tidy -diff"
	@echo "make demo         build, then run 'dispatcher demo'"
	@echo "make fuzz         run every fuzz target for FUZZTIME (default $(FUZZTIME))"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

links: build
	@for r in $(ROLES); do ln -sfn $(BIN) $$r; echo "$$r -> $(BIN)"; done

test:
	$(GO) test -race ./...

check: vet fmt staticcheck tidy

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

# Each fuzz target runs on its own: go test allows one -fuzz pattern per package.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -f $(BIN) $(ROLES)
