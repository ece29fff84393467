#!/usr/bin/env python
"""Re-quantize a GGUF's matrices: python benchmarks/gguf_requantize.py SRC.gguf DST.gguf q4_0

Every 2-D tensor whose rows are whole blocks becomes the given type (gguf-py's own quantizer, llama.cpp's
reference rounding), the rest (norms) is copied as it is, and so is every metadata field. vs_llamacpp.py uses
it to give llama.cpp a Q4_0 model of the same weights (llama.cpp's converter writes no Q4_0; llama-quantize's
Q4_0 would also keep the output matrix in Q6_K). Needs llama.cpp's gguf-py on the path.
"""
import os
import sys

import numpy as np


def main(src, dst, qtype_name):
    import gguf

    qtype = gguf.GGMLQuantizationType[qtype_name.upper()]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst + ".partial", arch=reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        if field.name == gguf.Keys.General.FILE_TYPE:
            continue  # set below
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    writer.add_file_type({"Q4_0": 2, "Q4_1": 3, "Q8_0": 7}.get(qtype.name, 0))
    for t in reader.tensors:
        data = np.asarray(t.data)
        if t.tensor_type == gguf.GGMLQuantizationType.F32 and data.ndim == 2 and data.shape[-1] % block == 0:
            writer.add_tensor(t.name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(dst + ".partial", dst)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.splitlines()[0])
    main(*sys.argv[1:])
