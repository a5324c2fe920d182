"""Line decoding without I/O: sentence framing, checksums, wristband and NMEA decoders."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.line_decoding import (
    MAX_LINE_BYTES,
    LineError,
    LineReader,
    Measurement,
    NmeaDecoder,
    WristbandDecoder,
    nmea_checksum,
    sentence_fields,
)


def _sentence(body: str) -> bytes:
    return f"${body}*{nmea_checksum(body.encode()):02X}\r\n".encode()


def _wb(seq: int, band: str = "A1B2") -> bytes:
    return _sentence(f"WB,{band},{seq},1.00,2.00,2.00,3.00,25.0,80")


def test_checksum_of_the_textbook_sentence() -> None:
    body = b"GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    assert nmea_checksum(body) == 0x47
    assert sentence_fields(b"$" + body + b"*47")[0] == "GPGGA"
    assert sentence_fields(b"$" + body + b"*47".lower())[0] == "GPGGA"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"GPGGA,1*00", "garbage"),
        (b"$GPGGA,1*0", "malformed"),
        (b"$GPGGA,1", "no_checksum"),
        (b"$GPGGA,1*FF", "checksum"),
        (b"$" + b"A" * MAX_LINE_BYTES, "too_long"),
        (
            b"$GP\xffGGA*" + f"{nmea_checksum(b'GP' + bytes([255]) + b'GGA'):02X}".encode(),
            "garbage",
        ),
    ],
)
def test_sentence_rejections_have_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(LineError) as info:
        sentence_fields(line)
    assert info.value.reason == reason


def test_wristband_line_values_and_vector_sum() -> None:
    (x, y, z, overall, peak, temp, battery) = WristbandDecoder().decode(_wb(7).strip())
    assert (x.value, y.value, z.value) == (1.0, 2.0, 2.0)
    assert overall == Measurement("vibration_rms", 3.0, "mm/s")
    assert (peak.unit, temp.unit, battery.unit) == ("m/s2", "degC", "%")


def test_wristband_sequence_gaps_wraps_and_restarts_are_counted() -> None:
    errors: Counter[str] = Counter()
    decoder = WristbandDecoder(errors=errors)
    for seq in (65533, 65534, 65535, 0, 1, 4, 0):
        decoder.decode(_wb(seq).strip())
    assert errors == Counter({"lines_lost": 2, "band_restart": 1})


def test_a_band_id_filter_counts_other_bands() -> None:
    reader = LineReader(WristbandDecoder("A1B2"))
    assert len(reader.feed(_wb(1) + _wb(2, band="ZZ9") + _wb(3))) == 2
    assert reader.errors["other_band"] == 1


def test_position_is_reported_once_per_fix_time() -> None:
    decoder = NmeaDecoder()
    rmc = _sentence("GNRMC,101010.00,A,5130.0000,N,00007.5000,W,10.0,90.0,010126,,,A").strip()
    gga = _sentence("GNGGA,101010.00,5130.0000,N,00007.5000,W,1,07,1.2,35.0,M,47.0,M,,")
    rmc_metrics = [m.metric for m in decoder.decode(rmc)]
    gga_metrics = [m.metric for m in decoder.decode(gga.strip())]
    assert rmc_metrics == ["latitude", "longitude", "speed", "course"]
    assert gga_metrics == ["fix_quality", "satellites", "hdop", "altitude"]
    later = _sentence("GNGGA,101011.00,5130.0010,N,00007.5000,W,1,07,1.2,35.0,M,47.0,M,,")
    assert [m.metric for m in decoder.decode(later.strip())][:2] == ["latitude", "longitude"]


def test_longitude_west_and_speed_in_kmh() -> None:
    rmc = _sentence("GPRMC,101010,A,5130.0000,N,00007.5000,W,10.0,90.0,010126,,,A").strip()
    values = {m.metric: m.value for m in NmeaDecoder().decode(rmc)}
    assert values == {"latitude": 51.5, "longitude": -0.125, "speed": 18.52, "course": 90.0}


sentences = st.sampled_from(
    [
        _wb(1),
        _wb(2),
        b"\x00\xff\x13noise",
        b"\r\n",
        b"$",
        b"$WB,A1B2,3,1,2,3,4,5,6*00\r\n",
        b"#" * 40,
        _sentence("WB,A1B2,9," + "9" * 150),
    ]
)


@given(st.lists(sentences, max_size=30), st.integers(min_value=1, max_value=64))
def test_how_bytes_arrive_never_changes_what_is_decoded(parts: list[bytes], chunk: int) -> None:
    data = b"".join(parts) + b"\n"
    whole = LineReader(WristbandDecoder())
    expected = whole.feed(data)
    pieces = LineReader(WristbandDecoder())
    got = [
        m for start in range(0, len(data), chunk) for m in pieces.feed(data[start : start + chunk])
    ]
    assert got == expected
    assert pieces.sentences == whole.sentences


@given(st.binary(max_size=600))
def test_random_bytes_are_counted_never_raised(data: bytes) -> None:
    for decoder in (WristbandDecoder(), NmeaDecoder()):
        reader = LineReader(decoder)
        decoded = reader.feed(data + b"\n")
        assert all(math.isfinite(m.value) for sentence in decoded for m in sentence)
        pieces = [p for p in data.replace(b"$", b"\n$").split(b"\n") if p.strip()]
        assert reader.sentences + sum(reader.errors.values()) >= min(1, len(pieces))


@given(
    st.floats(min_value=-89.9999, max_value=89.9999),
    st.floats(min_value=-179.9999, max_value=179.9999),
)
def test_coordinates_round_trip_through_nmea_text(latitude: float, longitude: float) -> None:
    def text(value: float, width: int) -> str:
        micro_minutes = round(abs(value) * 60_000_000)
        degrees, rest = divmod(micro_minutes, 60_000_000)
        return f"{degrees:0{width}d}{rest / 1_000_000:09.6f}"

    ns, ew = ("N" if latitude >= 0 else "S"), ("E" if longitude >= 0 else "W")
    body = f"GPGGA,000001,{text(latitude, 2)},{ns},{text(longitude, 3)},{ew},1,05,1.0,1.0,M,,M,,"
    values = {m.metric: m.value for m in NmeaDecoder().decode(_sentence(body).strip())}
    assert values["latitude"] == pytest.approx(latitude, abs=1e-6)
    assert values["longitude"] == pytest.approx(longitude, abs=1e-6)
