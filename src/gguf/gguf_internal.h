/*
 * gguf/gguf_internal.h: what the GGUF reader (gguf.c) shares with the writer
 * (gguf_write.c) and nothing else: the raw encoded bytes of a metadata value, so that
 * copying pairs from one file to another (quantize) is a byte copy that also carries
 * nested arrays through unchanged.
 */
#ifndef SLMESH_GGUF_INTERNAL_H
#define SLMESH_GGUF_INTERNAL_H

#include "gguf/gguf.h"

/* Value of pair i as stored in the file: returns its first byte (string: the first
 * character; array: the first element, after the element type and count) and sets
 * *elem_type (arrays), *n (string length or element count) and *bytes (encoded bytes from
 * the returned pointer to the end of the value). NULL when i is out of range. */
const uint8_t *slm_gguf_kv_raw(const slm_gguf *g, int64_t i, slm_gguf_vtype *elem_type, uint64_t *n, size_t *bytes);

#endif /* SLMESH_GGUF_INTERNAL_H */
