"""Runs ONNX files exported by `fer-cbam export --onnx` with onnxruntime on a batch of gray
images, preprocessed as the graph's doc string says (p / 255, the gray plane replicated to the
input's channels), and prints JSON: per model, the logits and probabilities of the whole batch
and of its first 3 images alone (the batch dimension is free), the input's name and shape, and
the model's metadata.

    python onnx_run.py job.json    (job: {"n": images, "models": {name: {"file": x.onnx,
                                          "batch": raw u8 [n, size, size], "size"}}})
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    n = job["n"]
    out = {"onnxruntime": ort.__version__}
    for name, m in job["models"].items():
        path, size = m["file"], m["size"]
        gray = np.fromfile(m["batch"], dtype=np.uint8).reshape(n, size, size)
        # One thread: the machine is shared, and the result must not depend on a thread count.
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = s.get_inputs()[0]
        channels = inp.shape[1]
        x = gray.astype(np.float32)[:, None] / np.float32(255.0)
        x = np.ascontiguousarray(np.repeat(x, channels, axis=1))
        logits, probs = s.run(["logits", "probabilities"], {inp.name: x})
        (few,) = s.run(["logits"], {inp.name: x[:3]})
        meta = s.get_modelmeta()
        out[name] = {
            "input": inp.name,
            "input_shape": [d if isinstance(d, int) else str(d) for d in inp.shape],
            "outputs": [o.name for o in s.get_outputs()],
            "logits": logits.tolist(),
            "probabilities": probs.tolist(),
            "logits_first3": few.tolist(),
            "metadata": dict(meta.custom_metadata_map),
            "doc": meta.description or meta.graph_description,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
