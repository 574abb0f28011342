"""``olmoflow convert``: native checkpoint <-> transformers (HF) directory."""

from __future__ import annotations

import argparse

from olmoflow.errors import OlmoflowError


def convert_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="olmoflow convert", description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-hf", metavar="HF_DIR", help="transformers OLMo 2/3 directory to import")
    src.add_argument("--to-hf", metavar="DIR", help="native checkpoint (or model dir) to export")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--tokenizer", help="tokenizer directory to include in an HF export")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = p.parse_args(argv)
    from olmoflow.model.hf import export_hf, import_hf

    if args.from_hf:
        out = import_hf(args.from_hf, args.out)
        print(f"imported {args.from_hf} -> {out} (native)")
    else:
        if args.dtype != "float32" and not args.to_hf:
            raise OlmoflowError("--dtype applies to --to-hf only")
        out = export_hf(args.to_hf, args.out, tokenizer_dir=args.tokenizer, dtype=args.dtype)
        print(f"exported {args.to_hf} -> {out} (transformers format)")
    return 0
