# Browser build: `make wasm` -> dist/web/, `make test-web` -> headless check.
# Included from the top Makefile (one line). See docs/WEB.md.
#
# Toolchain: Debian's emscripten 3.1.6 (clang-14 + binaryen), installed on
# first use. zstd's decoder and cJSON are compiled from Debian's source
# packages, fetched once into build/web/src by web/fetch-sources.sh.
# The library (LIB_C from the top Makefile, minus the AVX2 files) is compiled
# with emcc into its own archive; the linker only pulls in what web/wasm_api.c
# reaches, so programs-only code never enters the wasm.

WEB_B := build/web
WEB_DIST := dist/web
WEB_SRC := $(WEB_B)/src
WEB_INC := $(WEB_B)/include
WEB_NPM := $(WEB_B)/npm
WEB_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# emcc 3.1.6 needs acorn & co. from Debian's node path under Node 20.
EMCC := NODE_PATH=/usr/share/nodejs emcc
EMAR := NODE_PATH=/usr/share/nodejs emar
WEB_CFLAGS := -std=c11 -D_GNU_SOURCE -I. -I$(WEB_INC) -I$(WEB_SRC) $(WARN) -O3 -msimd128 -DLMP_WASM=1 '-D__builtin_cpu_supports(x)=0' \
  -Werror=incompatible-pointer-types -Werror=int-conversion -Werror=implicit-function-declaration
# Library files never needed in the browser or not portable to wasm.
WEB_LIB_EXCLUDE ?= %_avx2.c %_avx512.c convert/% split/% verify/%
WEB_LIB_C := $(filter-out $(WEB_LIB_EXCLUDE),$(LIB_C))
WEB_LIB_O := $(WEB_LIB_C:%.c=$(WEB_B)/obj/%.o)
WEB_OWN_O := $(WEB_B)/obj/web/wasm_api.o $(WEB_B)/obj/web/wasm_hash.o \
             $(WEB_B)/obj/web/wasm_zstd.o $(WEB_B)/obj/cJSON.o
WEB_PAGE := web/index.html web/app.js web/style.css
WEB_LDFLAGS := -O3 -msimd128 -s MODULARIZE=1 -s EXPORT_NAME=createLmpack \
  -s ALLOW_MEMORY_GROWTH=1 -s INITIAL_MEMORY=16MB -s MAXIMUM_MEMORY=2GB \
  -s MEMORY_GROWTH_LINEAR_STEP=8MB \
  -s FILESYSTEM=0 -s ENVIRONMENT=web,worker,node \
  -s EXPORTED_FUNCTIONS=_malloc,_free -s EXPORTED_RUNTIME_METHODS=UTF8ToString,stringToUTF8,lengthBytesUTF8

.PHONY: wasm test-web web-toolchain web-chromium

# Install on demand, only when a web target runs.
$(WEB_B)/.toolchain:
	@mkdir -p $(@D)
	@command -v emcc >/dev/null 2>&1 || { echo "web: installing emscripten (Debian package)"; \
	  DEBIAN_FRONTEND=noninteractive $(WEB_SUDO) apt-get install -y -qq emscripten >/dev/null \
	  || { $(WEB_SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(WEB_SUDO) apt-get install -y -qq emscripten >/dev/null; }; }
	@touch $@

$(WEB_SRC)/VERSIONS: web/fetch-sources.sh
	sh web/fetch-sources.sh $(WEB_SRC)

# emcc does not search /usr/include; expose just the headers we compile against.
$(WEB_INC)/.stamp: $(WEB_SRC)/VERSIONS
	@mkdir -p $(WEB_INC)/cjson
	ln -sf /usr/include/xxhash.h $(WEB_INC)/xxhash.h
	ln -sf /usr/include/zstd.h $(WEB_INC)/zstd.h
	ln -sf /usr/include/zstd_errors.h $(WEB_INC)/zstd_errors.h
	ln -sf $(abspath $(WEB_SRC))/cjson/cJSON.h $(WEB_INC)/cjson/cJSON.h
	@touch $@

$(WEB_B)/obj/%.o: %.c $(WEB_B)/.toolchain $(WEB_INC)/.stamp
	@mkdir -p $(@D)
	$(EMCC) $(WEB_CFLAGS) -MMD -MP -c $< -o $@

$(WEB_B)/obj/web/wasm_zstd.o: web/wasm_zstd.c $(WEB_B)/.toolchain $(WEB_INC)/.stamp
	@mkdir -p $(@D)
	$(EMCC) -std=c11 -I. -I$(WEB_SRC) -O3 -msimd128 -DZSTD_DISABLE_ASM -c $< -o $@

$(WEB_B)/obj/cJSON.o: $(WEB_SRC)/VERSIONS $(WEB_B)/.toolchain
	@mkdir -p $(@D)
	$(EMCC) -std=c11 -O2 -I$(WEB_SRC)/cjson -c $(WEB_SRC)/cJSON.c -o $@

$(WEB_B)/liblmpack.a: $(WEB_LIB_O)
	@rm -f $@
	$(EMAR) rcs $@ $^

# Trap stubs for *_avx2 kernels referenced from dead dispatch branches.
$(WEB_B)/nox86.c: $(WEB_OWN_O) $(WEB_B)/liblmpack.a web/nox86-stubs.sh
	sh web/nox86-stubs.sh $@ $(WEB_OWN_O) $(WEB_B)/liblmpack.a
$(WEB_B)/nox86.o: $(WEB_B)/nox86.c
	$(EMCC) -O2 -c $< -o $@

$(WEB_DIST)/lmpack.js: $(WEB_OWN_O) $(WEB_B)/nox86.o $(WEB_B)/liblmpack.a
	@mkdir -p $(@D)
	$(EMCC) $(WEB_LDFLAGS) -o $@ $(WEB_OWN_O) $(WEB_B)/nox86.o $(WEB_B)/liblmpack.a

$(WEB_DIST)/%: web/%
	@mkdir -p $(@D)
	cp $< $@

wasm: $(WEB_DIST)/lmpack.js $(addprefix $(WEB_DIST)/,$(notdir $(WEB_PAGE)))
	@sh web/sizes.sh $(WEB_DIST)

# Headless browser check; needs the native programs for the reference bundle.
$(WEB_B)/.chromium:
	@mkdir -p $(@D)
	@[ -x /usr/bin/chromium ] || { echo "web: installing chromium (Debian package)"; \
	  DEBIAN_FRONTEND=noninteractive $(WEB_SUDO) apt-get install -y -qq chromium >/dev/null \
	  || { $(WEB_SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(WEB_SUDO) apt-get install -y -qq chromium >/dev/null; }; }
	@touch $@

$(WEB_NPM)/node_modules/playwright-core/package.json: web/package.json
	@mkdir -p $(WEB_NPM)
	cp web/package.json $(WEB_NPM)/package.json
	cd $(WEB_NPM) && npm install --no-audit --no-fund --loglevel=error
	@touch $@

# The reference bundles: stories260k through the native tools (convert,
# then split): int4 with the default settings (what gets deployed), and f32
# (no activation quantization: native and wasm must then generate the same
# text). Rebuilt when the tools change.
WEB_TEST_BUNDLE := $(WEB_B)/test/bundle
WEB_TEST_TOOLS := $(addprefix $(BINDIR)/,lmpack lmpack-convert lmpack-split lmpack-run)
WEB_TEST_BUNDLE_F32 := $(WEB_B)/test/bundle-f32
$(WEB_TEST_BUNDLE)/manifest.json: $(WEB_TEST_TOOLS) tests/data/stories260k/model.safetensors
	@rm -rf $(WEB_TEST_BUNDLE) $(WEB_B)/test/stories260k.lmpk
	@mkdir -p $(WEB_B)/test
	$(BINDIR)/lmpack convert tests/data/stories260k -o $(WEB_B)/test/stories260k.lmpk
	$(BINDIR)/lmpack split $(WEB_B)/test/stories260k.lmpk -o $(WEB_TEST_BUNDLE) --name stories260k
$(WEB_TEST_BUNDLE_F32)/manifest.json: $(WEB_TEST_TOOLS) tests/data/stories260k/model.safetensors
	@rm -rf $(WEB_TEST_BUNDLE_F32) $(WEB_B)/test/stories260k-f32.lmpk
	@mkdir -p $(WEB_B)/test
	$(BINDIR)/lmpack convert tests/data/stories260k --dtype f32 -o $(WEB_B)/test/stories260k-f32.lmpk
	$(BINDIR)/lmpack split $(WEB_B)/test/stories260k-f32.lmpk -o $(WEB_TEST_BUNDLE_F32) --name stories260k-f32

test-web: wasm $(WEB_TEST_BUNDLE)/manifest.json $(WEB_TEST_BUNDLE_F32)/manifest.json $(WEB_B)/.chromium \
          $(WEB_NPM)/node_modules/playwright-core/package.json
	WEB_NPM=$(WEB_NPM) LMP_BIN=$(abspath $(BINDIR)) WEB_BUNDLE=$(WEB_TEST_BUNDLE) \
	  WEB_BUNDLE_F32=$(WEB_TEST_BUNDLE_F32) \
	  node web/test-web.mjs

-include $(WEB_LIB_O:.o=.d) $(WEB_OWN_O:.o=.d)
