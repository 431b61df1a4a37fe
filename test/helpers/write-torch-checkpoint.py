#!/usr/bin/env python3
"""Writes a safetensors file's tensors as a PyTorch zip checkpoint (pytorch_model.bin), the way
torch.save lays one out (torch/serialization.py: <prefix>/data.pkl, a protocol-2 pickle of an
OrderedDict state dict with a _metadata attribute; <prefix>/data/<key> raw storages; byteorder;
version), without torch: Python's own pickler, with stand-ins registered under torch's names.

    write-torch-checkpoint.py IN.safetensors OUT.bin

Layout choices that a reader must handle: the first two 1-d tensors share one storage (the
second at an offset), and the first 2-d tensor is stored as float16 (HalfStorage).
"""
import collections
import io
import json
import pickle
import struct
import sys
import types
import zipfile

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, torch_utils


def _storage_class(name):
    cls = type(name, (), {})
    cls.__module__ = "torch"
    setattr(torch, name, cls)
    return cls


FloatStorage, HalfStorage = _storage_class("FloatStorage"), _storage_class("HalfStorage")


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class Storage:
    def __init__(self, key, kind, data):
        self.key, self.kind, self.data = key, kind, data


class Tensor:
    def __init__(self, storage, offset, shape):
        self.storage, self.offset, self.shape = storage, offset, shape

    def __reduce_ex__(self, protocol):
        stride, step = [], 1
        for size in reversed(self.shape):
            stride.insert(0, step)
            step *= size
        args = (self.storage, self.offset, tuple(self.shape), tuple(stride), False, collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            item = 4 if obj.kind is FloatStorage else 2
            return ("storage", obj.kind, obj.key, "cpu", len(obj.data) // item)
        return None


def main(source, target):
    with open(source, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        body = f.read()
    names = [n for n in header if n != "__metadata__"]
    state = collections.OrderedDict()
    storages = []
    shared = [n for n in names if len(header[n]["shape"]) == 1][:2]
    half = next(n for n in names if len(header[n]["shape"]) == 2)
    for name in names:
        info = header[name]
        assert info["dtype"] == "F32", name
        begin, end = info["data_offsets"]
        raw = body[begin:end]
        if name == half:
            floats = struct.unpack(f"<{len(raw) // 4}f", raw)
            raw = struct.pack(f"<{len(floats)}e", *floats)
            storages.append(Storage(str(len(storages)), HalfStorage, raw))
            state[name] = Tensor(storages[-1], 0, info["shape"])
        elif name == shared[1]:  # appended to the storage of shared[0], which came first
            state[name] = Tensor(shared_storage, shared_offset, info["shape"])
            shared_storage.data += raw
        else:
            storages.append(Storage(str(len(storages)), FloatStorage, bytearray(raw)))
            state[name] = Tensor(storages[-1], 0, info["shape"])
            if name == shared[0]:
                shared_storage, shared_offset = storages[-1], len(raw) // 4
    state._metadata = collections.OrderedDict({"": {"version": 1}})
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:
        pickled = io.BytesIO()
        Pickler(pickled, protocol=2).dump(state)
        z.writestr("pytorch_model/data.pkl", pickled.getvalue())
        z.writestr("pytorch_model/byteorder", b"little")
        for s in storages:
            z.writestr(f"pytorch_model/data/{s.key}", bytes(s.data))
        z.writestr("pytorch_model/version", b"3\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
