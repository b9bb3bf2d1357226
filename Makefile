# slmesh: the two commands of the README, and the steps they are made of.
#
#   make demo   install what is missing, build, run stories260K (or $SLMESH_MODEL)
#   make test   install what is missing, build (release and ASan+UBSan), run every test,
#               run each fuzzer for a bounded time, print one line of counts
#
# Other targets: deps, build, build-asan, build-fuzz, fuzz, clean.
JOBS        ?= $(shell nproc)
SHARED      ?= $(abspath ../shared)
SLMESH_MODEL ?= $(SHARED)/models/stories260K.gguf
FUZZ_SECONDS ?= 20

.PHONY: all deps build build-asan build-fuzz test demo fuzz clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSLMESH_WERROR=ON >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLMESH_WERROR=ON -DSLMESH_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

build-fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLMESH_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

fuzz: build-fuzz
	@bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

test: build build-asan build-fuzz
	@bash scripts/test.sh $(FUZZ_SECONDS)

demo: build
	@bash scripts/demo.sh "$(SLMESH_MODEL)"

clean:
	rm -rf build build-asan build-fuzz
