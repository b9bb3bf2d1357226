/*
 * audit/audit_sign.c: Ed25519 keys for audit checkpoints (OpenSSL EVP_PKEY_ED25519): key
 * generation, PEM key files, signing and verifying.
 *
 * Invariants:
 *  - Private keys are PKCS#8 PEM written with mode 0600 to a path that must not exist
 *    (O_EXCL: never overwrite a key); public keys are SubjectPublicKeyInfo PEM.
 *  - A loaded key is immutable; a private key can also verify.
 *  - Signatures are the 64-byte Ed25519 signature of the checkpoint's canonical body bytes
 *    (pure Ed25519, no pre-hash), stored as 128 lowercase hex digits.
 * Thread-safety: keys may be shared by threads (OpenSSL 3 EVP_PKEY use is thread-safe for
 * signing/verifying with per-call contexts, which is what we do).
 * Non-goals: key rotation, hardware keys, encrypted private key files.
 */
#include "audit/audit_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/core.h"

/* Ed25519 signature length (RFC 8032). */
#define ED25519_SIG_BYTES 64

struct slm_audit_key {
    EVP_PKEY *pkey;   /* owned; an Ed25519 key */
    bool private_key; /* can sign */
};

/* The latest OpenSSL error as text into err, returning SLM_ERR_CRYPTO. */
static slm_status crypto_err(char *err, const char *what) {
    char buf[160];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return slm_errf(err, SLM_ERR_CRYPTO, "%s: %s", what, e ? buf : "failed");
}

/* ---- key files -------------------------------------------------------------------------------- */

/* Open path for writing a new file with mode; NULL (err set) if it exists or fails. */
static FILE *create_new(const char *path, mode_t mode, char *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

/* Write pkey to a new file path (mode) as PEM: the private key when priv, else the public. */
static slm_status write_pem(const char *path, EVP_PKEY *pkey, bool priv, mode_t mode, char *err) {
    FILE *f = create_new(path, mode, err);
    if (!f) return SLM_ERR_IO;
    int ok = priv ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) : PEM_write_PUBKEY(f, pkey);
    slm_status st = ok == 1 ? SLM_OK : crypto_err(err, priv ? "writing private key" : "writing public key");
    if (fclose(f) != 0 && st == SLM_OK) st = slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
    if (st != SLM_OK) unlink(path);
    return st;
}

slm_status slm_audit_keygen(const char *priv_path, const char *pub_path, char *err) {
    EVP_PKEY *pkey = NULL;
    slm_status st;
    if (!priv_path || !pub_path) return slm_errf(err, SLM_ERR_INVALID_ARG, "keygen: NULL path");
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &pkey) <= 0) {
        st = crypto_err(err, "Ed25519 key generation");
        goto done;
    }
    st = write_pem(priv_path, pkey, true, 0600, err);
    if (st != SLM_OK) goto done;
    st = write_pem(pub_path, pkey, false, 0644, err);
    if (st != SLM_OK) unlink(priv_path); /* never leave half a key pair */
done:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return st;
}

slm_status slm_audit_key_load(const char *path, bool private_key, slm_audit_key **out, char *err) {
    *out = NULL;
    if (!path) return slm_errf(err, SLM_ERR_INVALID_ARG, "key: NULL path");
    FILE *f = fopen(path, "r");
    if (!f) return slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
    EVP_PKEY *pkey = private_key ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
                                 : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!pkey) {
        ERR_clear_error();
        return slm_errf(err, SLM_ERR_CRYPTO, "%s: not a PEM %s key", path,
                        private_key ? "private" : "public");
    }
    if (EVP_PKEY_id(pkey) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(pkey);
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "%s: not an Ed25519 key", path);
    }
    slm_audit_key *key = slm_calloc(1, sizeof *key);
    if (!key) {
        EVP_PKEY_free(pkey);
        return slm_errf(err, SLM_ERR_NOMEM, "key: no memory");
    }
    key->pkey = pkey;
    key->private_key = private_key;
    *out = key;
    return SLM_OK;
}

void slm_audit_key_free(slm_audit_key *key) {
    if (!key) return;
    EVP_PKEY_free(key->pkey);
    slm_free(key);
}

/* ---- sign / verify ------------------------------------------------------------------------------ */

slm_status slm_audit_sign(const slm_audit_key *key, const void *msg, size_t len,
                          char sig[SLM_AUDIT_SIG_HEX], char *err) {
    unsigned char raw[ED25519_SIG_BYTES];
    size_t rawlen = sizeof raw;
    slm_status st = SLM_OK;
    if (!key || !key->private_key) return slm_errf(err, SLM_ERR_INVALID_ARG, "sign: not a private key");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) != 1 ||
        EVP_DigestSign(ctx, raw, &rawlen, msg, len) != 1 || rawlen != ED25519_SIG_BYTES) {
        st = crypto_err(err, "Ed25519 sign");
        goto done;
    }
    for (size_t i = 0; i < rawlen; i++) snprintf(sig + 2 * i, 3, "%02x", raw[i]);
done:
    EVP_MD_CTX_free(ctx);
    return st;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

slm_status slm_audit_sig_check(const slm_audit_key *key, const void *msg, size_t len,
                               const char *sig, char *err) {
    unsigned char raw[ED25519_SIG_BYTES];
    if (!key) return slm_errf(err, SLM_ERR_INVALID_ARG, "verify: no key");
    if (!sig || strlen(sig) != 2 * ED25519_SIG_BYTES)
        return slm_errf(err, SLM_ERR_TAMPERED, "signature missing or not %d hex digits",
                        2 * ED25519_SIG_BYTES);
    for (size_t i = 0; i < ED25519_SIG_BYTES; i++) {
        int hi = hexval(sig[2 * i]), lo = hexval(sig[2 * i + 1]);
        if (hi < 0 || lo < 0) return slm_errf(err, SLM_ERR_TAMPERED, "signature is not hex");
        raw[i] = (unsigned char)(hi << 4 | lo);
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key->pkey) != 1) {
        EVP_MD_CTX_free(ctx);
        return crypto_err(err, "Ed25519 verify");
    }
    int ok = EVP_DigestVerify(ctx, raw, sizeof raw, msg, len);
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (ok != 1) return slm_errf(err, SLM_ERR_TAMPERED, "signature does not verify");
    return SLM_OK;
}
