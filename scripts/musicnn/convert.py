#!/usr/bin/env python3
"""Convert the musicnn checkpoints of the PyPI wheel to safetensors, without TensorFlow.

    pip download musicnn==0.1.0 --no-deps -d /tmp/mnn      # the wheel, 29,292,476 bytes
    python3 scripts/musicnn/convert.py /tmp/mnn/musicnn-0.1.0-py3-none-any.whl models/musicnn

The wheel's sha256 is checked. For each of MSD_musicnn and MTT_musicnn it writes `<name>.safetensors`
(the 64 trained tensors in TF's names and layouts, the optimizer's Adam slots dropped) and the tag list in
the safetensors metadata; the ISC notice of the wheel is copied to LICENSE-musicnn beside them.

A TF1 checkpoint is a "tensor bundle": the `.index` file is a LevelDB SSTable whose values are
BundleEntryProto messages (dtype, shape, offset, size), and `.data-00000-of-00001` holds the tensors as raw
little-endian float32. Standard library and NumPy only.
"""
import hashlib
import json
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
MODELS = ["MSD_musicnn", "MTT_musicnn"]


def varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def block_entries(buf, offset, size):
    """(key, value) of one SSTable block (prefix-compressed keys, restart array at the end)."""
    block = buf[offset:offset + size]
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = varint(block, pos)
        non_shared, pos = varint(block, pos)
        value_len, pos = varint(block, pos)
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_len]
        pos += value_len


def protobuf_fields(msg):
    """(field number, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    pos = 0
    while pos < len(msg):
        tag, pos = varint(msg, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = varint(msg, pos)
        elif wire == 2:
            n, pos = varint(msg, pos)
            value, pos = msg[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = msg[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = msg[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield field, value


def read_bundle(index, data):
    if struct.unpack_from("<Q", index, len(index) - 8)[0] != 0xDB4775248B80FB57:
        raise ValueError("not a LevelDB table (bad footer magic)")
    footer = index[-48:]
    _, pos = varint(footer, 0)
    _, pos = varint(footer, pos)  # metaindex handle
    idx_off, pos = varint(footer, pos)
    idx_size, pos = varint(footer, pos)
    tensors = {}
    for _, handle in block_entries(index, idx_off, idx_size):
        off, p = varint(handle, 0)
        size, _ = varint(handle, p)
        for key, value in block_entries(index, off, size):
            name = key.decode()
            if name == "":  # the bundle header
                continue
            dtype, shape, offset, nbytes = None, [], 0, 0
            for field, v in protobuf_fields(value):
                if field == 1:
                    dtype = v
                elif field == 2:
                    for f2, dim in protobuf_fields(v):
                        if f2 == 2:
                            shape.append(dict(protobuf_fields(dim)).get(1, 0))
                elif field == 4:
                    offset = v
                elif field == 5:
                    nbytes = v
            if dtype != 1:  # DT_FLOAT
                raise ValueError(f"{name}: dtype {dtype}, expected float32")
            tensors[name] = np.frombuffer(data, "<f4", count=nbytes // 4, offset=offset).reshape(shape)
    return tensors


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        blob = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    tmp.replace(path)


def labels(config_py):
    scope = {}
    exec(compile(config_py, "configuration.py", "exec"), scope)
    return {"MSD_musicnn": scope["MSD_LABELS"], "MTT_musicnn": scope["MTT_LABELS"]}


def main():
    wheel, out = Path(sys.argv[1]), Path(sys.argv[2])
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256} (musicnn-0.1.0-py3-none-any.whl)")
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        tags = labels(z.read("musicnn/configuration.py").decode())
        (out / "LICENSE-musicnn").write_bytes(z.read("musicnn-0.1.0.dist-info/LICENSE.md"))
        for model in MODELS:
            tensors = read_bundle(z.read(f"musicnn/{model}/.index"),
                                  z.read(f"musicnn/{model}/.data-00000-of-00001"))
            kept = {k: v for k, v in tensors.items() if "Adam" not in k and not k.startswith("beta")}
            meta = {"source": "musicnn-0.1.0-py3-none-any.whl (PyPI), sha256 " + WHEEL_SHA256,
                    "model": model, "licence": "ISC, see LICENSE-musicnn",
                    "tags": json.dumps(tags[model])}
            path = out / f"{model}.safetensors"
            write_safetensors(path, kept, meta)
            n = sum(v.size for v in kept.values())
            print(f"{path}: {len(kept)} tensors, {n} floats")


if __name__ == "__main__":
    main()
