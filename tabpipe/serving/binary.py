"""The binary tensor data extension of the Open Inference Protocol (REST).

A request with an ``Inference-Header-Content-Length: N`` header carries its JSON in
the first N bytes of the body and the data of every input whose parameters hold
``binary_data_size`` after it, in the order the inputs are listed. A tensor's bytes
are its values in row-major order, little-endian: 1 byte per BOOL (0 or 1), the
type's width for the integer and floating types, and for BYTES each element as a
4-byte little-endian length followed by that many bytes (UTF-8 text for tabpipe's
string columns).

Outputs are answered the same way when the request asks for it
(``parameters.binary_data_output`` on the request, or ``parameters.binary_data`` on
a requested output, as ``tritonclient`` does by default): their JSON loses ``data``
and gains ``parameters.binary_data_size``, and their bytes follow the JSON.

Every malformed size, length or value raises :class:`RequestError` (400), never
reads past the body, and never allocates more than the body's own size.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from tabpipe.serving.request_error import RequestError

#: The request and response header naming the length of the JSON part.
HEADER = "inference-header-content-length"

#: Little-endian numpy dtypes of the fixed-width datatypes.
FIXED_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("u1"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part of a request body.

    Raises:
        RequestError: the header is not a whole number within the body's length.
    """
    try:
        size = int(header_length)
    except ValueError:
        raise RequestError(400, "Inference-Header-Content-Length: not an integer") from None
    if not 0 < size <= len(body):
        raise RequestError(
            400, f"Inference-Header-Content-Length: {size} is outside the body's {len(body)} bytes"
        )
    view = memoryview(body)
    return bytes(view[:size]), view[size:]


def binary_size(where: str, tensor: dict[str, Any]) -> int | None:
    """The tensor's ``parameters.binary_data_size``, or None when it has none.

    Raises:
        RequestError: parameters is not an object, or the size is not a non-negative integer.
    """
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise RequestError(400, f"{where}.parameters: must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise RequestError(400, f"{where}.parameters.binary_data_size: must be a non-negative integer")
    return size


def read_tensor(
    where: str, datatype: str, count: int, size: int, binary: memoryview, offset: int
) -> tuple[list[Any] | np.ndarray, int]:
    """Decode ``count`` values of ``datatype`` from ``size`` bytes of ``binary`` at ``offset``.

    Returns:
        The values, and the offset after them: BYTES as a list of str, the fixed-width
        datatypes as a 1-D array of theirs (BOOL as numpy bool), a copy that keeps
        nothing of the body alive.

    Raises:
        RequestError: the sizes disagree, the data runs past the body, a BOOL byte is
            not 0 or 1, or a BYTES element is not UTF-8.
    """
    end = offset + size
    if end > len(binary):
        raise RequestError(
            400,
            f"{where}.parameters.binary_data_size: {size} bytes at offset {offset} run past the "
            f"{len(binary)} bytes of binary data",
        )
    chunk = binary[offset:end]
    if datatype == "BYTES":
        return _read_bytes(where, count, chunk), end
    dtype = FIXED_DTYPES.get(datatype)
    if dtype is None:
        raise RequestError(400, f"{where}.datatype: {datatype!r} has no binary form")
    if size != count * dtype.itemsize:
        raise RequestError(
            400,
            f"{where}.parameters.binary_data_size: {size} bytes, but {count} value(s) of {datatype} "
            f"take {count * dtype.itemsize}",
        )
    values = np.frombuffer(chunk, dtype=dtype, count=count)
    if datatype == "BOOL":
        if count and values.max() > 1:
            raise RequestError(400, f"{where}: BOOL bytes must be 0 or 1")
        return values.astype(bool), end
    # Native byte order, and no view into the request body (which can then be freed).
    return values.astype(dtype.newbyteorder("="), copy=True), end


def _read_bytes(where: str, count: int, chunk: memoryview) -> list[Any]:
    values: list[Any] = []
    position, size = 0, len(chunk)
    while position < size:
        if position + 4 > size:
            raise RequestError(400, f"{where}: a BYTES element's 4-byte length is cut short")
        (length,) = _LENGTH.unpack_from(chunk, position)
        position += 4
        if position + length > size:
            raise RequestError(
                400, f"{where}: a BYTES element of {length} bytes runs past binary_data_size {size}"
            )
        if len(values) == count:
            raise RequestError(400, f"{where}: binary data holds more than the shape's {count} value(s)")
        try:
            values.append(str(chunk[position : position + length], "utf-8"))
        except UnicodeDecodeError:
            raise RequestError(400, f"{where}: BYTES element {len(values)} is not valid UTF-8") from None
        position += length
    if len(values) != count:
        raise RequestError(
            400, f"{where}: binary data holds {len(values)} value(s) but the shape says {count}"
        )
    return values


def encode_tensor(datatype: str, values: np.ndarray) -> bytes:
    """The binary form of an output tensor (row-major, little-endian; BYTES length-prefixed)."""
    if datatype == "BYTES":
        parts = []
        for value in values.ravel().tolist():
            data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=FIXED_DTYPES[datatype]).tobytes()


def wants_binary(value: Any, where: str) -> bool:
    """A ``binary_data``/``binary_data_output`` parameter as a bool (absent: False).

    Raises:
        RequestError: the value is not a boolean.
    """
    if value is None:
        return False
    if type(value) is not bool:
        raise RequestError(400, f"{where}: must be true or false")
    return value
