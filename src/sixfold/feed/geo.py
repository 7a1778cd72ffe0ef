"""Geohash cells and great-circle distance: what geo search indexes posts by and queries with.

A geohash of precision p interleaves 5p bits (longitude first) of the point's position in a
grid of 2**lon_bits x 2**lat_bits cells, written in base32. The grid index is computed with
one floor per axis (`(lat + 90) / 180 * 2**bits`), the same IEEE arithmetic the Spark index
job uses as column expressions, so Python and Spark put a point in the same cell.

`cells_covering` picks the finest precision whose cells are at least as tall and wide as the
radius (so the circle meets a handful of cells) and returns every cell of that precision that
the circle intersects, by an exact point-to-cell distance on the sphere.
"""

from __future__ import annotations

import math

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
_DECODE = {c: i for i, c in enumerate(BASE32)}
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180.0
MAX_PRECISION = 12


def axis_bits(precision: int) -> tuple[int, int]:
    """(lat_bits, lon_bits) of a geohash of `precision` characters (longitude takes the odd bit)."""
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"geohash precision must be 1..{MAX_PRECISION}, got {precision}")
    bits = 5 * precision
    return bits // 2, (bits + 1) // 2


def cell_size_deg(precision: int) -> tuple[float, float]:
    """(height, width) of a cell in degrees."""
    lat_bits, lon_bits = axis_bits(precision)
    return 180.0 / (1 << lat_bits), 360.0 / (1 << lon_bits)


def _check_point(lat: float, lon: float) -> None:
    if not (-90.0 <= lat <= 90.0) or math.isnan(lat):
        raise ValueError(f"latitude must be within -90..90, got {lat}")
    if not (-180.0 <= lon <= 180.0) or math.isnan(lon):
        raise ValueError(f"longitude must be within -180..180, got {lon}")


def grid_index(lat: float, lon: float, precision: int) -> tuple[int, int]:
    """(row, column) of the cell holding the point; 90 and 180 fall in the last row/column."""
    _check_point(lat, lon)
    lat_bits, lon_bits = axis_bits(precision)
    rows, cols = 1 << lat_bits, 1 << lon_bits
    row = min(math.floor((lat + 90.0) / 180.0 * rows), rows - 1)
    col = min(math.floor((lon + 180.0) / 360.0 * cols), cols - 1)
    return row, col


def hash_of_index(row: int, col: int, precision: int) -> str:
    """The geohash of grid cell (row, col): bits interleaved longitude first, 5 to a character."""
    lat_bits, lon_bits = axis_bits(precision)
    chars = []
    value = 0
    for k in range(5 * precision):
        if k % 2 == 0:
            bit = (col >> (lon_bits - 1 - k // 2)) & 1
        else:
            bit = (row >> (lat_bits - 1 - k // 2)) & 1
        value = (value << 1) | bit
        if k % 5 == 4:
            chars.append(BASE32[value])
            value = 0
    return "".join(chars)


def encode(lat: float, lon: float, precision: int = 6) -> str:
    """Geohash of a point (e.g. encode(57.64911, 10.40744, 11) == 'u4pruydqqvj')."""
    row, col = grid_index(lat, lon, precision)
    return hash_of_index(row, col, precision)


def index_of_hash(geohash: str) -> tuple[int, int]:
    """(row, column) of a geohash's cell in the grid of its precision."""
    row = col = 0
    k = 0
    for ch in geohash:
        try:
            value = _DECODE[ch]
        except KeyError:
            raise ValueError(f"{geohash!r} is not a geohash: {ch!r} is not in {BASE32!r}") from None
        for shift in range(4, -1, -1):
            bit = (value >> shift) & 1
            if k % 2 == 0:
                col = (col << 1) | bit
            else:
                row = (row << 1) | bit
            k += 1
    return row, col


def bounds(geohash: str) -> tuple[float, float, float, float]:
    """(lat_min, lat_max, lon_min, lon_max) of a cell."""
    if not geohash:
        raise ValueError("an empty string is not a geohash")
    row, col = index_of_hash(geohash)
    height, width = cell_size_deg(len(geohash))
    return -90.0 + row * height, -90.0 + (row + 1) * height, -180.0 + col * width, -180.0 + (col + 1) * width


def decode(geohash: str) -> tuple[float, float, float, float]:
    """(lat, lon, lat_error, lon_error): the cell's centre and half its height and width."""
    lat_min, lat_max, lon_min, lon_max = bounds(geohash)
    return (lat_min + lat_max) / 2, (lon_min + lon_max) / 2, (lat_max - lat_min) / 2, (lon_max - lon_min) / 2


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km on the mean-radius sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _lon_inside(lon: float, lon_min: float, lon_max: float) -> bool:
    return lon_min <= lon <= lon_max or lon_min <= lon + 360.0 <= lon_max or lon_min <= lon - 360.0 <= lon_max


def _distance_to_meridian_arc(lat: float, lon: float, meridian: float, lat_a: float, lat_b: float) -> float:
    """Shortest distance from a point to the meridian `meridian` between latitudes lat_a <= lat_b."""
    phi, dl = math.radians(lat), math.radians(meridian - lon)
    # cos(distance) along the meridian is A sin(m) + B cos(m): largest at m = atan2(A, B) or an end.
    peak = math.degrees(math.atan2(math.sin(phi), math.cos(phi) * math.cos(dl)))
    candidates = [lat_a, lat_b] + ([peak] if lat_a <= peak <= lat_b else [])
    return min(haversine_km(lat, lon, m, meridian) for m in candidates)


def distance_to_cell_km(lat: float, lon: float, geohash: str) -> float:
    """Shortest great-circle distance from a point to any point of the cell (0 inside it)."""
    lat_min, lat_max, lon_min, lon_max = bounds(geohash)
    if _lon_inside(lon, lon_min, lon_max):
        below, above = lat_min - lat, lat - lat_max
        return max(0.0, below, above) * KM_PER_DEGREE
    return min(_distance_to_meridian_arc(lat, lon, edge, lat_min, lat_max) for edge in (lon_min, lon_max))


def covering_precision(lat: float, radius_km: float, max_precision: int = MAX_PRECISION) -> int:
    """The finest precision <= max_precision whose cells are at least radius_km tall and wide at `lat`."""
    cos_lat = math.cos(math.radians(min(89.9, abs(lat))))
    for precision in range(max_precision, 0, -1):
        height, width = cell_size_deg(precision)
        if height * KM_PER_DEGREE >= radius_km and width * KM_PER_DEGREE * cos_lat >= radius_km:
            return precision
    return 1


def cells_covering(lat: float, lon: float, radius_km: float, max_precision: int = MAX_PRECISION) -> list[str]:
    """Geohash cells (one precision) that together hold every point within radius_km of (lat, lon):
    the centre's cell and each neighbour the circle intersects, sorted."""
    _check_point(lat, lon)
    if not radius_km >= 0 or math.isinf(radius_km):
        raise ValueError(f"radius_km must be a finite number >= 0, got {radius_km}")
    precision = covering_precision(lat, radius_km, max_precision)
    height, width = cell_size_deg(precision)
    lat_bits, lon_bits = axis_bits(precision)
    rows, cols = 1 << lat_bits, 1 << lon_bits
    angular = radius_km / EARTH_RADIUS_KM
    dlat = math.degrees(angular)
    lat_lo, lat_hi = lat - dlat, lat + dlat
    row_lo = max(0, math.floor((max(-90.0, lat_lo) + 90.0) / height) - 1)
    row_hi = min(rows - 1, math.floor((min(90.0, lat_hi) + 90.0) / height) + 1)
    if lat_lo <= -90.0 or lat_hi >= 90.0 or angular >= math.pi / 2:
        col_range = range(cols)  # the circle holds a pole (or half the globe): every longitude
    else:
        # widest longitude reach of a spherical cap; cells one further on each side absorb rounding
        dlon = math.degrees(math.asin(min(1.0, math.sin(angular) / math.cos(math.radians(lat)))))
        col_lo = math.floor((lon - dlon + 180.0) / width) - 1
        col_hi = math.floor((lon + dlon + 180.0) / width) + 1
        col_range = range(cols) if col_hi - col_lo + 1 >= cols else range(col_lo, col_hi + 1)
    found = set()
    for row in range(row_lo, row_hi + 1):
        for col in col_range:
            cell = hash_of_index(row, col % cols, precision)
            if cell not in found and distance_to_cell_km(lat, lon, cell) <= radius_km * (1 + 1e-9) + 1e-9:
                found.add(cell)
    return sorted(found)
