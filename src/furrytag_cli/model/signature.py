"""The input shapes of a SavedModel's serving signature, read without TensorFlow.

``saved_model.pb`` is a protocol buffer; the few fields on the way to a signature's
input shapes are walked here in the wire format (field numbers from TensorFlow's
``saved_model.proto``, ``meta_graph.proto`` and ``tensor_shape.proto``), skipping the
graph itself, so that opening a legacy model costs no TensorFlow import.
"""

from collections.abc import Iterator

# SavedModel.meta_graphs, MetaGraphDef.signature_def, SignatureDef.inputs,
# TensorInfo.tensor_shape, TensorShapeProto.dim, Dim.size; map entries are (1: key, 2: value).
_META_GRAPHS, _SIGNATURE_DEF, _INPUTS, _TENSOR_SHAPE, _DIM, _SIZE = 2, 5, 1, 3, 2, 1
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: ints for varints, bytes for the rest."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire == _BYTES:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
            if len(value) != length:
                raise ValueError("truncated field")
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def _map(message: bytes, number: int) -> dict[str, bytes]:
    entries = {}
    for field, entry in _fields(message):
        if field == number:
            parts = dict(_fields(entry))
            entries[bytes(parts.get(1, b"")).decode("utf-8", "replace")] = bytes(parts.get(2, b""))
    return entries


def serving_input_shapes(saved_model: bytes, signature: str = "serving_default") -> list[dict]:
    """For each meta graph with ``signature``: its inputs' shapes, ``{name: [dims]}``
    (-1 for an unknown dimension). Raises ValueError when the bytes are not a protobuf."""
    found = []
    for field, graph in _fields(saved_model):
        if field != _META_GRAPHS:
            continue
        definition = _map(graph, _SIGNATURE_DEF).get(signature)
        if definition is None:
            continue
        shapes = {}
        for name, info in _map(definition, _INPUTS).items():
            shape = b"".join(v for f, v in _fields(info) if f == _TENSOR_SHAPE)
            dims = []
            for f, dim in _fields(shape):
                if f == _DIM:
                    size = dict(_fields(dim)).get(_SIZE, 0)
                    dims.append(size - (1 << 64) if size >= 1 << 63 else size)
            shapes[name] = dims
        found.append(shapes)
    return found
