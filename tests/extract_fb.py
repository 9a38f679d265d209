#!/usr/bin/env python3
"""Extract the mel filterbank and window of a NeMo model into .npy files, for test_features.

    extract_fb.py SOURCE OUTDIR          SOURCE: model_weights.ckpt, model.nemo or a case folder
    extract_fb.py --all GOLDEN_DIR OUTDIR   every case folder (with manifest.json) of GOLDEN_DIR
                                            into OUTDIR/<case>/

Writes fb.npy (preprocessor.featurizer.fb, float32, shape as stored: [1, n_mels, n_fft/2+1]) and
window.npy (preprocessor.featurizer.window, float32 [win_length]).

Standard library only (no numpy, no torch). A PyTorch checkpoint is a zip holding data.pkl (the
pickled state dict) and data/<key> (raw little-endian storages). The pickle is read with a
restricted Unpickler that only knows the handful of globals a state dict uses and refuses any
other, so a checkpoint cannot run code; tensors become (storage, offset, size, stride) records.
"""
import array
import collections
import io
import os
import pickle
import sys
import tarfile
import zipfile

WANTED = {"fb": "preprocessor.featurizer.fb", "window": "preprocessor.featurizer.window"}

# storage class name -> (array typecode, numpy descr)
STORAGE_TYPES = {"FloatStorage": ("f", "<f4")}


class Storage:
    def __init__(self, type_name, key, numel):
        self.type_name, self.key, self.numel = type_name, key, numel


class StorageType:
    def __init__(self, name):
        self.name = name


class TensorRecord:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return TensorRecord(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRecord(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *rest):
    return data


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel = pid
        name = stype.name if isinstance(stype, StorageType) else str(stype)
        return Storage(name, str(key), int(numel))


def open_checkpoint(source):
    """Return a ZipFile of the PyTorch checkpoint named by source."""
    if os.path.isdir(source):
        ckpt = os.path.join(source, "model_weights.ckpt")
        if os.path.exists(ckpt):
            return zipfile.ZipFile(ckpt)
        source = os.path.join(source, "model.nemo")
    if zipfile.is_zipfile(source):
        return zipfile.ZipFile(source)
    if tarfile.is_tarfile(source):
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                if os.path.basename(member.name) == "model_weights.ckpt":
                    return zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))
        raise SystemExit(f"{source}: no model_weights.ckpt inside")
    raise SystemExit(f"{source}: neither a PyTorch checkpoint (zip) nor a .nemo (tar)")


def tensor_values(zf, prefix, rec):
    """The tensor's elements in C order, as an array of its storage type."""
    if rec.storage.type_name not in STORAGE_TYPES:
        raise SystemExit(f"unsupported storage type {rec.storage.type_name}")
    code, _ = STORAGE_TYPES[rec.storage.type_name]
    raw = array.array(code)
    raw.frombytes(zf.read(f"{prefix}data/{rec.storage.key}"))
    if sys.byteorder == "big":
        raw.byteswap()
    out = array.array(code)
    ndim = len(rec.size)
    if any(s == 0 for s in rec.size):
        return out
    idx = [0] * ndim
    while True:
        out.append(raw[rec.offset + sum(i * s for i, s in zip(idx, rec.stride))])
        d = ndim - 1
        while d >= 0:
            idx[d] += 1
            if idx[d] < rec.size[d]:
                break
            idx[d] = 0
            d -= 1
        if d < 0:
            return out


def write_npy(path, values, shape, descr):
    shape_txt = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(str(s) for s in shape) + ")"
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    data = array.array(values.typecode, values)
    if sys.byteorder == "big":
        data.byteswap()
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1"))
        f.write(data.tobytes())


def extract(source, outdir):
    zf = open_checkpoint(source)
    pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise SystemExit(f"{source}: expected one data.pkl in the checkpoint, found {len(pkl)}")
    prefix = pkl[0][: -len("data.pkl")]
    state = RestrictedUnpickler(io.BytesIO(zf.read(pkl[0]))).load()
    os.makedirs(outdir, exist_ok=True)
    for short, key in WANTED.items():
        if key not in state:
            raise SystemExit(f"{source}: no {key} in the state dict")
        rec = state[key]
        values = tensor_values(zf, prefix, rec)
        write_npy(os.path.join(outdir, short + ".npy"), values, rec.size, STORAGE_TYPES[rec.storage.type_name][1])
        print(f"{os.path.join(outdir, short + '.npy')}: {key} {list(rec.size)}")


def main(argv):
    if len(argv) == 4 and argv[1] == "--all":
        golden, outdir = argv[2], argv[3]
        cases = sorted(c for c in os.listdir(golden) if os.path.isfile(os.path.join(golden, c, "manifest.json")))
        if not cases:
            raise SystemExit(f"{golden}: no case folders with a manifest.json")
        for case in cases:
            extract(os.path.join(golden, case), os.path.join(outdir, case))
        return 0
    if len(argv) == 3 and not argv[1].startswith("-"):
        extract(argv[1], argv[2])
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
