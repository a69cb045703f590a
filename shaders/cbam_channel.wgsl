// placeholder: replaced by the op's kernels
@compute @workgroup_size(1) fn placeholder() {}
