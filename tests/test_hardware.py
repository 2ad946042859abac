"""Buzzer patterns on the runtime clock, through gpiozero's MockPWMPin; the button recogniser."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from common.clock import VirtualClock
from device.button import PressRecogniser
from device.config import PinSection
from device.hardware import PATTERNS, Hardware, Sounder


@pytest.fixture
def hw():
    hardware = Hardware.open(PinSection(), MockFactory(pin_class=MockPWMPin))
    yield hardware
    hardware.close()


def test_sounder_drives_the_pwm_pin_in_virtual_time(hw):
    clock = VirtualClock()
    sounder = Sounder(hw.buzzer, clock)
    pin = hw.buzzer.pwm_device.pin
    assert sounder.play("reminder") == 300_000
    assert pin.frequency == pytest.approx(880) and pin.state > 0
    clock.sleep_until_us(150_000); sounder.tick()   # the gap between the two beeps
    assert pin.state == 0
    clock.sleep_until_us(250_000); sounder.tick()
    assert pin.frequency == pytest.approx(880) and pin.state > 0
    clock.sleep_until_us(300_000); sounder.tick()
    assert pin.state == 0 and not sounder.busy


def test_every_pattern_is_within_the_buzzer_range(hw):
    lo, hi = hw.buzzer.min_tone.frequency, hw.buzzer.max_tone.frequency
    for name, steps in PATTERNS.items():
        for freq, seconds in steps:
            assert freq is None or lo <= freq <= hi, name
            assert seconds > 0


def recogniser() -> PressRecogniser:
    return PressRecogniser(double_window_us=400_000, short_max_us=1_000_000, hold_us=3_000_000,
                           long_hold_us=5_000_000)


def test_hold_fires_while_held_and_long_hold_later_with_the_same_press_id():
    r = recogniser()
    r.pressed(0)
    assert r.poll(2_900_000) == []
    (hold,) = r.poll(3_000_000)
    (long_hold,) = r.poll(5_100_000)
    assert (hold.kind, long_hold.kind, hold.press_id) == ("hold", "long_hold", long_hold.press_id)
    assert r.released(6_000_000) + r.poll(7_000_000) == []  # no press after a hold


def test_a_press_longer_than_short_but_shorter_than_hold_means_nothing():
    r = recogniser()
    r.pressed(0)
    assert r.released(1_500_000) + r.poll(3_000_000) == []


def test_second_press_too_late_is_two_presses():
    r = recogniser()
    r.pressed(0); r.released(100_000)
    first = r.poll(600_000)
    r.pressed(700_000); r.released(800_000)
    second = r.poll(1_300_000)
    assert [g.kind for g in first + second] == ["press", "press"]
    assert [g.t_us for g in first + second] == [0, 700_000]


def test_cue_cache_follows_the_text_and_voice(tmp_path):
    from device.hardware import render_cue
    from tests.conftest import need
    need("espeak-ng")
    wav = tmp_path / "cues" / "announce.wav"
    first = render_cue("Achtung, Videoaufzeichnung", "de", wav).read_bytes()
    assert render_cue("Achtung, Videoaufzeichnung", "de", wav).read_bytes() == first  # cached
    changed = render_cue("Achtung, Video- und Tonaufzeichnung", "de", wav).read_bytes()
    assert changed != first and "Tonaufzeichnung" in (tmp_path / "cues" / "announce.wav.meta").read_text()
    assert render_cue("Achtung, Video- und Tonaufzeichnung", "en", wav).read_bytes() != changed
