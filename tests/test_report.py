"""`attncomp report`: the summary, the HTML (parsed), and the numerics checks."""

from html.parser import HTMLParser

import pytest

import attncomp as ac
from attncomp.cli import main
from attncomp.report import report


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.tags, self.images, self.text = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def sliding():
    return report(ac.variants.sliding_window(512), q_len=8192, heads=4, hardware=("h100", "b200", "a100"),
                  check_size=128)


def test_summary_has_every_part(sliding):
    text = sliding.summary()
    assert "analysis" in text and "exact" in text
    for hw in ("h100-sxm5", "b200", "a100-sxm4-80gb"):
        assert hw in text
    assert text.count("PASS") == 2
    assert [e.hardware for e in sliding.estimates] == ["h100-sxm5", "b200", "a100-sxm4-80gb"]


def test_html_parses_and_holds_picture_chart_and_sources(sliding, tmp_path):
    path = sliding.write(str(tmp_path / "out"))
    page = Collect()
    page.feed(open(path, encoding="utf-8").read())
    assert {"layout", "estimates", "breakdown", "checks"} <= page.ids
    assert page.images and page.images[0].startswith("data:image/png;base64,")
    assert page.tags.count("rect") >= 3  # the stacked bars
    body = "".join(page.text)
    assert "@triton.jit" in body and "def mask_mod" in body and "PASS" in body


def test_cascade_report_marks_flex_not_applicable():
    rep = report(ac.variants.sigmoid_attention(), q_len=4096, heads=2, hardware=("h100",), check_size=96)
    triton, flex = rep.checks
    assert triton.ok and not flex.ok and flex.source is None and "backend='triton'" in flex.detail
    assert "n/a" in rep.summary()


def test_cli_report_default_example(capsys, tmp_path):
    code = main(["report", "--quiet", "--q-len", "8k", "--heads", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "attncomp report: document" in out and out.count("PASS") == 2
    assert (tmp_path / "report.html").exists()


@pytest.mark.parametrize("spec, expected", [
    (ac.variants.causal(), 128),
    (ac.variants.sliding_window(64), 128),
    (ac.variants.sliding_window(1024), 2048),  # at 256 tokens a 1,024 window is plain causal
    (ac.variants.blockwise_causal(2100), 4096),
    (ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx >= 600) & (kv_idx <= q_idx), name="late"), 1024),
])
def test_check_size_shows_every_tile_class_and_the_structure(spec, expected):
    from attncomp.ir.plan import plan_of
    from attncomp.report import _classes, choose_check_size

    planned = plan_of(spec)
    layout = ac.analyze(planned, 32768)
    size = choose_check_size(planned, layout, 32768, 32768, lambda n: {})
    assert size == expected
    assert _classes(layout) <= _classes(ac.analyze(planned, size, block=32, batch=2, heads=2))


def test_report_checks_at_the_chosen_size():
    rep = report(ac.variants.sliding_window(64), q_len=4096, heads=2, hardware=("h100",))
    assert all("at 128 tokens" in c.detail for c in rep.checks), [c.detail for c in rep.checks]
