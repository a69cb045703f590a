// placeholder
@compute @workgroup_size(1) fn placeholder() {}
