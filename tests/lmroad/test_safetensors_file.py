"""Tests of lmroad.safetensors_file: our writer and our reader agree with each other and with
the reference implementation, and the reader refuses every malformed file, from its header,
with a message that says what it found.

The cross-checks need the ``safetensors`` package (and ``torch`` for bfloat16 and float16
tensors); they are skipped without it. The round trips and the refusals need neither.
"""

from __future__ import annotations

import json
import math
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lmroad import safetensors_file as sf
from lmroad.safetensors_file import DTYPES, SafetensorsError, SafetensorsFile, to_bytes

NUMPY_DTYPES = [np.dtype(v) for v in DTYPES.values()]          # every dtype we write
SAFETENSORS_OF = {np.dtype(v): k for k, v in DTYPES.items()}
DTYPE_IDS = list(DTYPES)


def sample(dtype: np.dtype, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values of ``dtype`` over its whole range (for floats: signed zeros, subnormals, inf, NaN)."""
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    if dtype.kind == "b":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True).reshape(shape)
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, info.tiny / 2, info.max, -info.max, np.inf, -np.inf, np.nan], dtype)
    values = (rng.standard_normal(n) * 100).astype(dtype)
    values[: min(n, len(special))] = special[: min(n, len(special))]
    return values.reshape(shape)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (NaN equal to itself)."""
    return (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes())


def file_of(header, data: bytes = b"", pad: bool = True) -> bytes:
    """A safetensors file of ``header`` (a dict, or its text as is) and ``data``: free to lie."""
    text = header.encode() if isinstance(header, str) else (
        header if isinstance(header, bytes) else json.dumps(header).encode())
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def entry(dtype="F32", shape=(2,), offsets=(0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


# =========================================================================== round trips

arrays = st.sampled_from(NUMPY_DTYPES).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
names = st.text(min_size=1, max_size=12).filter(lambda n: n != "__metadata__")
metadata = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)


@given(contents=st.dictionaries(names, arrays, max_size=5), meta=metadata)
def test_what_we_write_we_read_back_exactly(contents, meta):
    f = SafetensorsFile(to_bytes(contents, meta))
    assert list(f.headers) == list(contents)                  # in the order given
    assert f.metadata == meta
    for name, a in contents.items():
        assert f.headers[name] == (SAFETENSORS_OF[a.dtype], a.shape)
        assert f.shape(name) == a.shape and f.dtype(name) == a.dtype
        assert same(f.read(name), a), name


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (2, 3), (2, 1, 4)])
def test_every_dtype_and_shape_round_trips(dtype, shape):
    # before: a 0-d array came back of shape (1,): np.ascontiguousarray makes it 1-d
    a = sample(dtype, shape)
    back = SafetensorsFile(to_bytes({"a": a})).read("a")
    assert same(back, a)


def test_read_gives_a_new_writable_array():
    raw = to_bytes({"a": np.arange(4, dtype=np.int32)})
    f = SafetensorsFile(raw)
    a = f.read("a")
    a[0] = 99
    assert f.read("a")[0] == 0 and a.flags.writeable


def test_the_writer_stores_c_order_little_endian():
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    big = np.arange(5, dtype=">i4")
    raw = to_bytes({"f": fortran, "big": big})
    f = SafetensorsFile(raw)
    assert same(f.read("f"), np.ascontiguousarray(fortran)) and f.headers["big"] == ("I32", (5,))
    np.testing.assert_array_equal(f.read("big"), big)
    header_end = 8 + struct.unpack("<Q", raw[:8])[0]
    assert raw[header_end:] == fortran.tobytes(order="C") + big.astype("<i4").tobytes()


@given(contents=st.dictionaries(names, arrays, max_size=3), meta=metadata)
def test_the_data_starts_8_byte_aligned_after_a_padded_header(contents, meta):
    raw = to_bytes(contents, meta)
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and raw[8:9] == b"{"
    text = raw[8:8 + n].decode()
    assert text.rstrip(" ").endswith("}") and isinstance(json.loads(text), dict)     # padded with spaces


@pytest.mark.parametrize(("contents", "meta", "error", "expect"), [
    ({"o": np.array([None], dtype=object)}, None, TypeError, "dtype object"),
    ({"c": np.zeros(2, np.complex64)}, None, TypeError, "dtype complex64"),
    ({"s": np.array(["ab"])}, None, TypeError, "dtype <U2"),
    ({"": np.zeros(2)}, None, ValueError, "cannot name an array"),
    ({"__metadata__": np.zeros(2)}, None, ValueError, "cannot name an array"),
    ({3: np.zeros(2)}, None, ValueError, "cannot name an array"),
    ({"a": np.zeros(2)}, {"k": 1}, TypeError, "metadata maps strings to strings"),
    ({"a": np.zeros(2)}, {1: "v"}, TypeError, "metadata maps strings to strings"),
])
def test_the_writer_refuses_what_the_format_cannot_hold(contents, meta, error, expect):
    with pytest.raises(error, match=expect):
        to_bytes(contents, meta)


# =========================================================================== refusals

GOOD = {"a": entry("F32", (2,), (0, 8)), "b": entry("I16", (3,), (8, 14))}
GOOD_DATA = b"\0" * 14


def test_the_hand_written_file_the_refusals_start_from_is_good():
    f = SafetensorsFile(file_of(GOOD, GOOD_DATA))
    assert f.headers == {"a": ("F32", (2,)), "b": ("I16", (3,))}


def _with(name: str, **changes) -> dict:
    return {**GOOD, name: {**GOOD[name], **changes}}


REFUSED = {
    # the header's length
    "empty file": (b"", r"0 bytes: too short for a safetensors file"),
    "seven bytes": (b"\0" * 7, "7 bytes: too short"),
    "length past the end": (struct.pack("<Q", 100) + b"{}", r"the header length says 100 bytes; the file "
                                                            r"holds 2 after it"),
    "length of 2**64 - 1": (b"\xff" * 8 + b"{}", f"the header length says {2**64 - 1} bytes"),
    "a pickle": (b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins", "the header length says"),
    "an npz": (b"PK\x03\x04" + b"\0" * 40, "the header length says"),
    "length zero": (struct.pack("<Q", 0) + GOOD_DATA, r"does not start with '\{' \(first bytes b''\)"),
    # the header's text
    "not starting with {": (file_of("[" + json.dumps(GOOD) + "]", GOOD_DATA), "does not start with '{'"),
    "a space first": (file_of(" " + json.dumps(GOOD), GOOD_DATA), "does not start with '{'"),
    "not JSON": (file_of("{not json}", GOOD_DATA), r"the header is not valid JSON \(Expecting"),
    "cut short": (file_of(json.dumps(GOOD)[:-1], GOOD_DATA), "the header is not valid JSON"),
    "not UTF-8": (file_of(b'{"\xff": 1}', GOOD_DATA), "the header is not valid JSON"),
    "two objects": (file_of("{}" + json.dumps(GOOD), GOOD_DATA), "the header is not valid JSON"),
    "nested too deeply": (file_of('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"), "not valid JSON"),
    "a huge number": (file_of('{"a": ' + "1" * 5000 + "}"), "not valid JSON"),
    # keys twice
    "an entry twice": (file_of(json.dumps(GOOD)[:-1] + ', "a": ' + json.dumps(GOOD["a"]) + "}", GOOD_DATA),
                       "the header has the key 'a' twice"),
    "a key twice in an entry": (file_of('{"a": {"dtype": "F32", "dtype": "I32", "shape": [2], '
                                        '"data_offsets": [0, 8]}}', b"\0" * 8),
                                "the header has the key 'dtype' twice"),
    "metadata twice": (file_of('{"__metadata__": {}, "__metadata__": {"x": "y"}}'),
                       "the header has the key '__metadata__' twice"),
    # an entry's keys
    "an entry not an object": (file_of({"a": [0, 8]}, b"\0" * 8),
                               r"entry 'a': must be an object with exactly "
                               r"\['data_offsets', 'dtype', 'shape'\]"),
    "an entry without dtype": (file_of({"a": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
                               "entry 'a': must be an object with exactly"),
    "an entry with more": (file_of(_with("a", offset=0), GOOD_DATA), "entry 'a': must be an object with"),
    # the dtype
    "dtype F8_E4M3": (file_of(_with("a", dtype="F8_E4M3"), GOOD_DATA),
                      r"entry 'a': dtype 'F8_E4M3'; readable are \['BF16', 'BOOL', 'F16', 'F32', 'F64', "
                      r"'I16', 'I32', 'I64', 'I8', 'U16', 'U32', 'U64', 'U8'\]"),
    "dtype lower case": (file_of(_with("a", dtype="f32"), GOOD_DATA), "entry 'a': dtype 'f32'"),
    "dtype a number": (file_of(_with("a", dtype=4), GOOD_DATA), "entry 'a': dtype 4"),
    "dtype null": (file_of(_with("a", dtype=None), GOOD_DATA), "entry 'a': dtype None"),
    "dtype a list": (file_of(_with("a", dtype=["F32"]), GOOD_DATA), r"entry 'a': dtype \['F32'\]"),
    "dtype an object": (file_of(_with("a", dtype={"F32": 1}), GOOD_DATA), "entry 'a': dtype"),
    "dtype object": (file_of(_with("a", dtype="O"), GOOD_DATA), "entry 'a': dtype 'O'"),
    # the shape
    "shape not a list": (file_of(_with("a", shape=2), GOOD_DATA),
                         "entry 'a': shape must be a list of at most 64 ints >= 0, got 2"),
    "shape negative": (file_of(_with("a", shape=[-2]), GOOD_DATA), r"shape must be a list .*, got \[-2\]"),
    "shape a float": (file_of(_with("a", shape=[2.0]), GOOD_DATA), "shape must be a list"),
    "shape a bool": (file_of(_with("a", shape=[True, 2]), GOOD_DATA), "shape must be a list"),
    "shape of 65 dims": (file_of(_with("a", shape=[1] * 62 + [2, 1, 1]), GOOD_DATA), "shape must be a list"),
    "shape a string": (file_of(_with("a", shape="2"), GOOD_DATA), "shape must be a list"),
    # the size
    "size mismatch": (file_of(_with("a", shape=[3]), GOOD_DATA),
                      r"entry 'a': shape \(3,\) of F32 is 12 bytes, but its data_offsets span 8"),
    "a huge shape": (file_of(_with("a", shape=[10**9, 10**9]), GOOD_DATA),
                     r"shape \(1000000000, 1000000000\) of F32 is 4000000000000000000 bytes"),
    "a bf16 size mismatch": (file_of(_with("a", dtype="BF16"), GOOD_DATA), r"of BF16 is 4 bytes, but its "
                                                                           r"data_offsets span 8"),
    "an empty shape too big": (file_of({**GOOD, "e": entry("F32", (0, 10**30), (14, 14))}, GOOD_DATA),
                               r"entry 'e': shape \(0, 10{30}\) is empty but larger than any array can be"),
    # read as float32: 2**61 of them do not fit, though 2**61 bfloat16 would
    "an empty bf16 too big": (file_of({**GOOD, "e": entry("BF16", (0, 2**61), (14, 14))}, GOOD_DATA),
                              "is empty but larger than any array can be"),
    # the offsets
    "offsets past the data": (file_of(_with("b", data_offsets=[8, 15]), GOOD_DATA),
                              r"entry 'b': data_offsets must be \[begin, end\] with 0 <= begin <= end <= 14, "
                              r"got \[8, 15\]"),
    "offsets reversed": (file_of(_with("a", data_offsets=[8, 0]), GOOD_DATA), "data_offsets must be"),
    "offsets negative": (file_of(_with("a", data_offsets=[-8, 0]), GOOD_DATA), "data_offsets must be"),
    "offsets floats": (file_of(_with("a", data_offsets=[0.0, 8.0]), GOOD_DATA), "data_offsets must be"),
    "three offsets": (file_of(_with("a", data_offsets=[0, 4, 8]), GOOD_DATA), "data_offsets must be"),
    "offsets a string": (file_of(_with("a", data_offsets="0-8"), GOOD_DATA), "data_offsets must be"),
    # tiling the data
    "a gap": (file_of({"a": entry("F32", (2,), (0, 8)), "b": entry("I16", (3,), (10, 16))}, b"\0" * 16),
              r"entry 'b' starts at byte 10 of the data, but the entries before it end at 8: arrays must "
              r"tile the data with no gap and no overlap"),
    "a gap first": (file_of({"a": entry("F32", (2,), (4, 12))}, b"\0" * 12), "entry 'a' starts at byte 4"),
    "an overlap": (file_of({"a": entry("F32", (2,), (0, 8)), "b": entry("I16", (3,), (6, 12))}, b"\0" * 12),
                   "entry 'b' starts at byte 6 of the data, but the entries before it end at 8"),
    "the same bytes twice": (file_of({"a": entry("F32", (2,), (0, 8)), "b": entry("I32", (2,), (0, 8))},
                                     b"\0" * 8), "starts at byte 0 of the data, but the entries before it "
                                                 "end at 8"),
    "an empty array inside another": (file_of({**GOOD, "e": entry("F32", (0,), (4, 4))}, GOOD_DATA),
                                      "entry 'e' starts at byte 4 of the data, but the entries before it "
                                      "end at 8"),
    "trailing bytes": (file_of(GOOD, GOOD_DATA + b"\0\0"), r"the arrays end at byte 14 of the data, but the "
                                                           "file holds 16: bytes that no array owns"),
    "data but no arrays": (file_of({}, b"\0"), "the arrays end at byte 0 of the data, but the file holds 1"),
    # the metadata
    "metadata values not strings": (file_of({"__metadata__": {"k": 1}, **GOOD}, GOOD_DATA),
                                    "'__metadata__' must map strings to strings"),
    "metadata a list": (file_of({"__metadata__": ["k"], **GOOD}, GOOD_DATA), "'__metadata__' must map"),
    "metadata null": (file_of({"__metadata__": None, **GOOD}, GOOD_DATA), "'__metadata__' must map"),
    "metadata nested": (file_of({"__metadata__": {"k": {"v": "w"}}, **GOOD}, GOOD_DATA),
                        "'__metadata__' must map"),
}


@pytest.mark.parametrize(("raw", "expect"), REFUSED.values(), ids=REFUSED.keys())
def test_a_malformed_file_is_refused_saying_what_was_found(raw, expect):
    tracemalloc.start()
    try:
        with pytest.raises(SafetensorsError, match=expect):
            SafetensorsFile(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (1 << 20) + 4 * len(raw), f"refusing it allocated {peak / 2**20:.1f} MiB"


def test_a_header_over_the_limit_is_refused(monkeypatch):
    # the limit is 100 MB (the reference implementation's); here it is lowered, to spare the memory
    monkeypatch.setattr(sf, "_MAX_HEADER_BYTES", 16)
    raw = file_of(GOOD, GOOD_DATA)
    with pytest.raises(SafetensorsError, match=r"the header length says \d+ bytes; .* at most 16 are "
                                               "allowed"):
        SafetensorsFile(raw)


@pytest.mark.parametrize("header", ['{"a": 1}', '{"a": {}}'])
def test_every_refusal_is_a_safetensors_error_and_a_value_error(header):
    with pytest.raises(ValueError):
        SafetensorsFile(file_of(header))


@pytest.mark.parametrize("padding", [b"", b" " * 7, b"\t\n\r "])
def test_a_header_padded_or_not_with_json_whitespace_is_read(padding):
    text = json.dumps(GOOD).encode() + padding
    f = SafetensorsFile(struct.pack("<Q", len(text)) + text + GOOD_DATA)
    assert f.headers == {"a": ("F32", (2,)), "b": ("I16", (3,))}


def test_entries_in_any_order_of_their_offsets_are_read():
    data = np.array([1, 2], "<f4").tobytes() + np.array([3, 4, 5], "<i2").tobytes()
    header = {"b": entry("I16", (3,), (8, 14)), "a": entry("F32", (2,), (0, 8))}
    f = SafetensorsFile(file_of(header, data))
    assert list(f.headers) == ["b", "a"]
    np.testing.assert_array_equal(f.read("a"), [1, 2])
    np.testing.assert_array_equal(f.read("b"), [3, 4, 5])


def test_bfloat16_is_read_as_float32_exactly():
    f32 = np.array([1.0, -2.5, 0.0, -0.0, np.inf, -np.inf, 3.0e38, 1e-40, np.pi], np.float32)
    bf16_bits = (f32.view(np.uint32) >> 16).astype("<u2")
    f = SafetensorsFile(file_of({"h": entry("BF16", (3, 3), (0, 18))}, bf16_bits.tobytes()))
    assert f.dtype("h") == np.float32 and f.headers["h"] == ("BF16", (3, 3))
    got = f.read("h")
    assert got.dtype == np.float32 and got.shape == (3, 3)
    np.testing.assert_array_equal(got.reshape(-1).view(np.uint32), bf16_bits.astype(np.uint32) << 16)
    assert got.reshape(-1)[1] == -2.5 and np.isinf(got.reshape(-1)[4])


# =========================================================================== the reference implementation

@pytest.fixture(scope="module")
def reference():
    """safetensors.numpy, or skip."""
    return pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def reference_torch():
    """(torch, safetensors.torch), or skip."""
    torch = pytest.importorskip("torch")
    return torch, pytest.importorskip("safetensors.torch")


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=DTYPE_IDS)
def test_our_files_are_read_by_the_reference(reference, dtype, tmp_path):
    contents = {"matrix": sample(dtype, (3, 4)), "scalar": sample(dtype, (), seed=1),
                "empty": sample(dtype, (2, 0)), "vector": sample(dtype, (5,), seed=2)}
    raw = to_bytes(contents, {"format": "np", "producer": "lmroad"})
    back = reference.load(raw)
    assert back.keys() == contents.keys()
    for name, a in contents.items():
        assert same(back[name], a), name
    (tmp_path / "m.safetensors").write_bytes(raw)
    from safetensors import safe_open

    with safe_open(tmp_path / "m.safetensors", framework="np") as f:
        assert f.metadata() == {"format": "np", "producer": "lmroad"}
        assert sorted(f.keys()) == sorted(contents)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=DTYPE_IDS)
def test_the_references_files_are_read_by_ours(reference, dtype):
    contents = {"matrix": sample(dtype, (3, 4)), "scalar": sample(dtype, (), seed=1),
                "empty": sample(dtype, (0,)), "cube": sample(dtype, (2, 1, 3), seed=2)}
    f = SafetensorsFile(reference.save(contents, metadata={"who": "reference", "empty": ""}))
    assert f.metadata == {"who": "reference", "empty": ""}
    assert sorted(f.headers) == sorted(contents)
    for name, a in contents.items():
        assert same(f.read(name), a), name


@given(contents=st.dictionaries(names, arrays, max_size=4), meta=metadata)
def test_ours_and_the_reference_agree_on_any_arrays(reference, contents, meta):
    ours = to_bytes(contents, meta)
    back = reference.load(ours)
    assert back.keys() == contents.keys()
    assert all(same(back[n], a) for n, a in contents.items())
    theirs = SafetensorsFile(reference.save(contents, metadata=meta or None))
    assert theirs.metadata == meta and sorted(theirs.headers) == sorted(contents)
    assert all(same(theirs.read(n), a) for n, a in contents.items())


def test_the_references_bfloat16_is_read_as_float32_exactly(reference_torch):
    torch, st_torch = reference_torch
    torch.manual_seed(0)
    special = torch.tensor([0.0, -0.0, 1.0, -2.5, float("inf"), float("-inf"), 3.0e38, 1e-40, 9.2e-41])
    t = torch.cat([special, torch.randn(63) * 1000]).to(torch.bfloat16).reshape(8, 9)
    f = SafetensorsFile(st_torch.save({"w": t, "scalar": torch.tensor(1.5, dtype=torch.bfloat16)}))
    assert f.headers["w"] == ("BF16", (8, 9)) and f.dtype("w") == np.float32
    want = t.float().numpy()
    got = f.read("w")
    assert got.dtype == np.float32 and got.view(np.uint32).tobytes() == want.view(np.uint32).tobytes()
    assert f.read("scalar").shape == () and f.read("scalar") == 1.5


def test_float16_both_ways_with_the_reference_torch(reference_torch):
    torch, st_torch = reference_torch
    a = sample(np.dtype(np.float16), (4, 5))
    t = st_torch.load(to_bytes({"h": a}))["h"]
    assert t.dtype == torch.float16 and t.numpy().tobytes() == a.tobytes()
    back = SafetensorsFile(st_torch.save({"h": torch.from_numpy(a)})).read("h")
    assert same(back, a)


def test_the_references_dtypes_we_do_not_read_are_refused_by_name(reference_torch):
    torch, st_torch = reference_torch
    for dtype, name in [("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("complex64", "C64")]:
        if not hasattr(torch, dtype):
            continue
        try:
            raw = st_torch.save({"x": torch.zeros(3, dtype=getattr(torch, dtype))})
        except Exception:                            # a dtype this safetensors cannot write
            continue
        with pytest.raises(SafetensorsError, match=f"entry 'x': dtype '{name}'; readable are"):
            SafetensorsFile(raw)
