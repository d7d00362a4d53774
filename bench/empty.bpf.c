// SPDX-License-Identifier: GPL-2.0
/* The fair peer for the syscall sensor's fast path: raw_tp programs on the
 * same two tracepoints that do nothing at all. What they add to a syscall is
 * the floor of any BPF program there (the tracepoint's static call, the BPF
 * dispatch, the program's prologue/epilogue); bpfguard's tp_btf programs go
 * through the same raw-tracepoint dispatch. Built by bench/syscall_overhead.py. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tp/sys_enter")
int empty_sys_enter(void *ctx)
{
	return 0;
}

SEC("raw_tp/sys_exit")
int empty_sys_exit(void *ctx)
{
	return 0;
}
