/* full: the whole context stays; reaching the budget is an error. */
#include "policy/policy.h"

const kv_policy_ops policy_full_ops = {
    .name = "full",
    .flags = "",
    .summary = "keep everything; exceeding the budget is an error (default)",
    .may_evict = false,
};
