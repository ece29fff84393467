"""The device's IR pass pipeline (paddlellm.ops.passes) as the predictor runs it: once, when the predictor is
created, with the rewritten program cached beside the model (Paddle's optimized-model cache: `_optimized.json`
and `_optimized.pdiparams`) under a key of the pass list, device, op library, Paddle and the exported files, so
later runs load it as it is. Each pass is logged with how often it matched, in PaddleNLP's words, also when
Paddle's own logging is off; a pass that matches fewer times than expected is a warning naming it.
`ir_debug` dumps the program before and after each pass into a directory."""
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import paddle

from paddlellm.ops import passes as pass_table
from paddlellm.quiet import holding

CACHE_DIR_NAME = ".paddlellm_optimized"
# Paddle's output while it builds a predictor that the user does not need: glog INFO lines and pass banners (with
# PADDLELLM_IR_LOG), the custom ops registered a second time (see runners.create_predictor).
PADDLE_NOISE = re.compile(rb"^I\d{4} |--- Running PIR pass|op already registered")
IR_PRINT = re.compile(r"IRPrinting on builtin.module (before|after) (\w+) pass")


def log(message):
    print(f"[predictor] {message}", flush=True)


class PassPipeline:
    """The passes for one predictor: `apply` sets up its paddle.inference.Config, `create` builds the predictor."""

    def __init__(self, model_dir, manifest, device, names, ir_debug=None):
        self.model_dir, self.manifest, self.names = Path(model_dir), manifest, list(names)
        self.ir_debug = Path(ir_debug) if ir_debug else None
        self.key = cache_key_fields(self.model_dir, manifest, device, self.names)
        self.cache = cache_location(self.model_dir, hashlib.sha256(json.dumps(self.key, sort_keys=True).encode())
                                    .hexdigest()[:16])
        self.cached = bool(self.names) and not self.ir_debug and all(
            (self.cache / f).is_file() for f in ("passes.json", "_optimized.json", "_optimized.pdiparams"))
        self.staging = None

    def program_path(self):
        """The program the predictor runs: the exported one, or the passes' result where it is cached."""
        optimized = self.cache / "_optimized.json" if self.names else None
        return optimized if optimized is not None and optimized.is_file() else self.model_dir / self.manifest.program

    def apply(self, config):
        if not self.names:
            return
        if self.cached:
            config.set_model(str(self.cache / "_optimized.json"), str(self.cache / "_optimized.pdiparams"))
            return
        config.enable_custom_passes(self.names, False)
        if self.ir_debug:
            config.switch_ir_debug(True, self.names)
        if self.cache is not None:
            self.staging = self.cache.with_name(f"{self.cache.name}.tmp-{os.getpid()}")
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir(parents=True)
            config.set_optim_cache_dir(str(self.staging))
            config.enable_save_optim_model(True)

    def create(self, config, verbose=False):
        """paddle.inference.create_predictor(config), then the pass report (and the cache entry)."""
        from paddlellm import ops

        ops.forget_pass_matches()
        err, out = None, None
        try:
            with holding(2) as err, holding(1) as out:
                predictor = paddle.inference.create_predictor(config)
        except BaseException:
            self._discard()
            raise
        finally:
            if err is not None:
                os.write(1, b"" if self.ir_debug else out.data)
                os.write(2, err.data if verbose else b"".join(
                    line for line in err.data.splitlines(keepends=True) if not PADDLE_NOISE.search(line)))
        self._report({name: ops.pass_matches(name) or 0 for name in self.names}, out.data.decode(errors="replace"))
        return predictor

    def _report(self, matches, out):
        if not self.names:
            return
        if self.cached:
            matches = json.loads((self.cache / "passes.json").read_text())["matches"]
            log(f"IR passes: the optimized program cached in {self.cache} ("
                + ", ".join(f"{n} x{matches.get(n, 0)}" for n in self.names) + ")")
            return
        layers = self.manifest.num_layers
        for name in self.names:
            spec = pass_table.BY_NAME[name]
            expected = spec.expected(layers, self.manifest.quantized_projections)
            log(f"--- Running IR pass [{name}]: {matches[name]} matches (expected {expected}: "
                f"{spec.describe_expected()})")
            if matches[name] < expected:
                log(f"warning: IR pass {name} matched {matches[name]} times, fewer than the {expected} "
                    f"expected on a Llama of {layers} layers: part of the program keeps its plain ops")
        if self.ir_debug:
            write_ir_dumps(out, self.ir_debug)
            log(f"IR before and after each pass: {self.ir_debug}")
        self._commit(matches)

    def _commit(self, matches):
        if self.staging is None:
            return
        if not (self.staging / "_optimized.json").is_file():
            self._discard()
            return
        (self.staging / "passes.json").write_text(json.dumps({"passes": self.names, "matches": matches,
                                                               "key": self.key}) + "\n")
        try:
            os.replace(self.staging, self.cache)
        except OSError:  # another process cached it first
            self._discard()
        self._prune()

    def _prune(self):
        """Remove the cached programs no run can load any more: made from other exported files, or by another
        op library or Paddle (each holds a copy of the weights)."""
        for entry in self.cache.parent.iterdir():
            if entry == self.cache or ".tmp-" in entry.name or not (entry / "passes.json").is_file():
                continue
            try:
                key = json.loads((entry / "passes.json").read_text()).get("key", {})
            except (OSError, ValueError):
                continue
            if any(key.get(field) != self.key[field] for field in ("op_library", "paddle", "files")):
                shutil.rmtree(entry, ignore_errors=True)

    def _discard(self):
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def write_ir_dumps(printed, directory):
    """Split Paddle's IR printing (stdout) into DIRECTORY/NN_<pass>.<before|after>.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    sections = re.split(r"(?m)^===-+===\n\s*(IRPrinting on builtin.module (?:before|after) \w+ pass)\n===-+===\n",
                        printed)
    count = 0
    for header, body in zip(sections[1::2], sections[2::2]):
        when, name = IR_PRINT.search(header).groups()
        count += when == "before"
        (directory / f"{count:02d}_{name}.{when}.txt").write_text(body)


def cache_key_fields(model_dir, manifest, device, names):
    """What the cached program depends on: the passes, the device, the op library, Paddle and the exported files."""
    from paddlellm import ops

    files = [model_dir / manifest.program, model_dir / manifest.params]
    return {"passes": names, "device": device, "op_library": ops.library_id(),
            "paddle": [paddle.__version__, getattr(paddle.version, "commit", "")],
            "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}


def cache_location(model_dir, key):
    """Beside the model when its directory is writable, else in the user's cache."""
    if os.access(model_dir, os.W_OK):
        return model_dir / CACHE_DIR_NAME / key
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "paddlellm" / "optimized" / key
