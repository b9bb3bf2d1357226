/*
 * fuzz/fuzz_server.c: libFuzzer target for the server's outside-input checks that need no
 * model: the JSON config file parser (slm_server_config_parse) and the UTF-8 validator that
 * guards every request body.
 *
 * Property checked beyond "no crash, no leak": slm_server_utf8_valid agrees with jansson's
 * own UTF-8 check (json_stringn accepts exactly the valid strings), and a config that parses
 * has 1..SLM_SERVER_MAX_MODELS models, each with a non-empty name and a path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    json_t *s = json_stringn(text, size);
    if (slm_server_utf8_valid(text, size) != (s != NULL)) abort();
    json_decref(s);
    slm_server_config cfg = {0};
    char err[SLM_ERR_LEN];
    if (slm_server_config_parse(text, size, &cfg, err) == SLM_OK) {
        if (cfg.n_models < 1 || cfg.n_models > SLM_SERVER_MAX_MODELS) abort();
        for (int32_t i = 0; i < cfg.n_models; i++)
            if (!cfg.models[i].name || !cfg.models[i].name[0] || !cfg.models[i].path) abort();
        slm_server_config_free(&cfg);
    }
    return 0;
}
