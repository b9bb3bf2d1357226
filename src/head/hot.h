/*
 * head/hot.h: HOT_CLONES, the attribute that compiles a hot loop of the head module twice,
 * for AVX2 and for the baseline x86-64, and lets the loader pick one once (GCC/clang
 * target_clones, an ifunc). Each float lane does the same operations in the same order in
 * both clones and floating-point contraction is off in ISO C mode, so the clones give
 * identical bits: results do not depend on the machine's vector width.
 * Off under sanitizers (ifunc resolvers run before their runtime) and off x86-64.
 * Thread-safety: n/a. Non-goals: hand-written intrinsics.
 */
#ifndef SLMESH_HEAD_HOT_H
#define SLMESH_HEAD_HOT_H

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define HOT_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef HOT_CLONES
#define HOT_CLONES
#endif

#endif /* SLMESH_HEAD_HOT_H */
