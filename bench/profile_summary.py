#!/usr/bin/env python3
"""Summaries of the profiles bench/profile.sh takes (standard library + valgrind's tools).

    profile_summary.py callgrind FILE REQUESTS   inclusive share of our main functions, top self costs
    profile_summary.py massif FILE               the peak heap snapshot by allocating function

Callgrind's inclusive costs double-count recursive async frames, so the list below names the
functions whose inclusive cost is meaningful (each is entered once per unit of work).
"""

import re
import subprocess
import sys

# (label, regex on the function name) — inclusive cost of the most expensive match.
OURS = [
    ("decode frames (FrameCodec::decode)", r"FrameCodec as tokio_util::codec::decoder::Decoder>::decode$"),
    ("encode rows once for the peers (EncodedBody::predict)", r"codec::EncodedBody::predict$"),
    ("encode frames (FrameCodec::encode)", r"FrameCodec as tokio_util::codec::encoder::Encoder<.*>>::encode$"),
    ("socket writes (Link::write_loop)", r"Link::write_loop::\{\{closure\}\}$"),
    ("batching: queue and split (Batcher, batching::send)", r"cluster::batching::send::\{\{closure\}\}$"),
    ("resolve rows by name (TypedRows::from_rows)", r"typed::TypedRows::from_rows$"),
    ("local predict (Served::predict)", r"serve::Served::predict$"),
    ("  preprocessing (Preprocessor::transform_typed)", r"Preprocessor::transform_typed$"),
    ("  the model (CompiledModel::predict)", r"compiled::CompiledModel::predict$"),
    ("read a CSV for prediction (CsvBatches::feed)", r"csv_stream::CsvBatches::feed$"),
    ("read a CSV (data::read_raw; offline)", r"ml::data::read_raw$"),
    ("predict-file: write the output (write_batch)", r"predict_file::write_batch$"),
    ("train: whole (model::train_blocking)", r"model::train_blocking$"),
    ("  load the shard (TrainingSource::load_split)", r"TrainingSource::load_split$"),
    ("    read CSV cells as text (data::read_raw_from)", r"data::read_raw_from$"),
    ("    type and parse columns (data::table_from_raw)", r"data::table_from_raw$"),
    ("    split (Table::split)", r"data::Table::split$"),
    ("  fit (Pipeline::fit)", r"pipeline::Pipeline::fit$"),
    ("    median imputation (Preprocessor::fit)", r"preprocess::Preprocessor::fit$"),
    ("    binning (tree::BinnedData::new)", r"tree::BinnedData::new$"),
    ("    tree growth (tree::grow)", r"tree::grow$"),
    ("  drift reference (drift::Reference::with_bins)", r"drift::Reference::with_bins$"),
    ("boosting (learner::fit_boosted)", r"learner::fit_boosted$"),
    ("  histograms (tree::Ctx::build_hist)", r"tree::Ctx::build_hist$"),
    ("  split search (tree::Ctx::candidate)", r"tree::Ctx::candidate$"),
    ("  row subsampling (rand::seq::index::sample_inplace)", r"rand::seq::index::sample_inplace$"),
    ("cross-validation (eval::evaluate_split)", r"eval::evaluate_split$"),
    ("sorting (slice::sort ipnsort)", r"sort::unstable::ipnsort$"),
]

MALLOC = ("malloc", "_int_malloc", "free", "_int_free", "malloc_consolidate", "unlink_chunk",
          "realloc", "_int_realloc", "calloc", "cfree", "__rdl_alloc", "__rdl_dealloc")

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?):(.*?)(?: \[(.*)\])?$")


def annotate(path, inclusive):
    out = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", path],
        capture_output=True, text=True, check=True).stdout
    total, rows = None, []
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(100.0%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = LINE.match(line)
        if m and total:
            rows.append((int(m.group(1).replace(",", "")), m.group(2), m.group(3)))
    return total, rows


def self_costs(path):
    """Self cost per function, read from the callgrind file itself (callgrind_annotate 3.19
    mis-attributes the costs of inlined frames in its self listing)."""
    names, costs = {}, {}
    fn, after_calls = None, False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line)
                if m.group(2) is not None:
                    names[m.group(1)] = m.group(2)
                fn = names.get(m.group(1), m.group(1))
            elif line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
                if m and m.group(2) is not None:
                    names[m.group(1)] = m.group(2)
            elif line.startswith("calls="):
                after_calls = True
            elif line and (line[0].isdigit() or line[0] in "+-*"):
                if after_calls:
                    after_calls = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and fn is not None:
                    costs[fn] = costs.get(fn, 0) + int(parts[1])
    return costs


def callgrind(path, units):
    total, inc = annotate(path, True)
    print(f"{total:,} instructions in all; {total / units:,.0f} per unit of work ({units:,} units)")
    print()
    print("inclusive share (functions entered once per unit of work):")
    for label, pattern in OURS:
        best = max((c for c, _, fn in inc if re.search(pattern, fn)), default=0)
        if best:
            print(f"  {100 * best / total:5.1f}%  {best / units:12,.0f} / unit  {label}")
    print()
    by_fn = {}
    for fn, c in self_costs(path).items():
        key = "malloc / free / realloc (libc)" if fn in MALLOC else fn
        by_fn[key] = by_fn.get(key, 0) + c
    print("top self costs:")
    for fn, c in sorted(by_fn.items(), key=lambda x: -x[1])[:14]:
        print(f"  {100 * c / total:5.1f}%  {fn[:130]}")


def massif(path):
    lines = open(path).read().split("\n")
    snaps, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("snapshot="):
            i += 1
            continue
        snap, j = {"start": None}, i + 1
        while j < len(lines) and not lines[j].startswith("snapshot="):
            key, _, val = lines[j].partition("=")
            if key in ("mem_heap_B", "mem_heap_extra_B"):
                snap[key] = int(val)
            if lines[j] == "heap_tree=peak":
                snap["peak"] = True
                snap["start"] = j + 1
            j += 1
        snap["end"] = j
        snaps.append(snap)
        i = j
    peak = next(s for s in snaps if s.get("peak"))
    heap, extra = peak["mem_heap_B"], peak["mem_heap_extra_B"]
    print(f"peak heap {heap / 1e6:,.1f} MB + {extra / 1e6:,.1f} MB allocator overhead "
          f"(per-block headers and rounding)")
    stack, agg = [], {}
    for line in lines[peak["start"]:peak["end"]]:
        m = re.match(r"^( *)n\d+: (\d+) (.*)$", line)
        if not m:
            continue
        depth, size, desc = len(m.group(1)), int(m.group(2)), m.group(3)
        stack = stack[:depth] + [desc]
        # Attribute each allocation to the innermost-but-first frame that names our crate.
        if "ensemble_cluster::" in desc and not any("ensemble_cluster::" in s for s in stack[:-1]):
            key = re.sub(r"^0x[0-9A-F]+: ", "", desc)
            key = re.sub(r"\{closure_env#\d+\}<.*", "{closure}", key)
            agg[key[:150]] = agg.get(key[:150], 0) + size
    for k, v in sorted(agg.items(), key=lambda x: -x[1])[:8]:
        print(f"  {v / 1e6:8.1f} MB  {k}")


if __name__ == "__main__":
    if sys.argv[1] == "callgrind":
        callgrind(sys.argv[2], int(sys.argv[3]))
    else:
        massif(sys.argv[2])
