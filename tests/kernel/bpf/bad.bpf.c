/* A loader test fixture: `bad_prog` dereferences a map lookup without the
 * NULL check, which the verifier must refuse; `good_prog` is fine. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH); /* an array lookup with a constant key needs no NULL check on new kernels */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

SEC("raw_tp/sys_enter")
int good_prog(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counters, &k);

	if (v)
		*v += 1;
	return 0;
}

SEC("raw_tp/sys_exit")
int bad_prog(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counters, &k);

	*v += 1;
	return 0;
}
