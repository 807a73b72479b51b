"""The conda environment and requirements.txt pin the same versions; profiles name real params."""

import yaml

from deeperfour.core.config import ROOT, load_params, profile_overrides


def test_environment_yml_matches_requirements():
    req = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    req = sorted(r for r in req if r)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == req


def test_gpu_profile_keys_exist_in_params():
    pairs = profile_overrides(load_params(path=ROOT / "profiles" / "gpu.yaml"), load_params())
    assert pairs and all("." in k for k, _ in pairs)


def test_dvc_analytics_off():
    assert "analytics = false" in (ROOT / ".dvc" / "config").read_text()
