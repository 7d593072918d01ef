"""The synthetic face renderer: a batch of faces drawn with vectorised numpy.

Each face is made of implicit shapes (ellipses, parabolic brows, lids and lips) evaluated
on the pixel grid of the requested size, with a one-pixel smooth edge for antialiasing.
:func:`render_batch` takes per-image identity, pose and action-unit intensities (from
:mod:`ferray.data._synthetic_sampling`) and returns ``uint8`` images. The AUs move the
features: AU1/AU2 raise the inner / outer brows, AU4 lowers and draws them together, AU5
widens the eyes, AU6 raises the cheeks, AU7 tightens the lids, AU9 wrinkles the nose, AU10
raises the upper lip, AU12 pulls the lip corners up, AU14 dimples, AU15 pulls the corners
down, AU17 raises the chin, AU20 stretches the lips, AU23/AU24 tighten and press them, AU25
parts them, AU26 drops the jaw, AU43 closes the eyes and AU45 blinks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RENDER_AUS", "AU_COLUMN", "render_batch"]

#: AUs the renderer understands, in the column order of its intensities (AU14 is drawn but
#: is not one of the 18 in :data:`~ferray.data.AU_IDS`).
RENDER_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 43, 45)
#: Column of each AU in :data:`RENDER_AUS`.
AU_COLUMN = {au: i for i, au in enumerate(RENDER_AUS)}
_FACE_SCALE = 1.18  # face units -> image units at pose scale 1
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class _Canvas:
    """One batch of images being painted, with the face-space coordinates of every pixel."""

    def __init__(self, p: dict[str, np.ndarray], bg: np.ndarray, size: int, channels: int) -> None:
        f32 = np.float32
        self.p, self.size, self.channels = p, size, channels
        g = (np.arange(size, dtype=f32) + 0.5) * f32(2.0 / size) - f32(1.0)
        self.x, self.y = g[None, None, :], g[None, :, None]
        sc = p["scale"] * f32(_FACE_SCALE)
        c, s = np.cos(p["rot"]) / sc, np.sin(p["rot"]) / sc
        tx, ty = p["tx"], p["ty"]
        # image -> face: u = (c (x - tx) + s (y - ty)), v = (-s (x - tx) + c (y - ty)), scaled
        self.u = (c * self.x + s * self.y) - (c * tx + s * ty)
        self.v = (c * self.y - s * self.x) - (c * ty - s * tx)
        # features: shifted towards the turn and squeezed on the far side (a cheap yaw)
        yaw = p["yaw"]
        uf = self.u - f32(0.1) * yaw
        self.uf = uf + f32(0.3) * yaw * np.abs(uf)
        self.au = np.abs(self.uf)
        self.au0 = np.abs(self.u)
        self.ipx = sc * f32(size / 2.0)  # 1 / (pixel size in face units)
        self.img = np.empty((len(sc), channels, size, size), f32)  # channels first: fast broadcasting
        self.img[...] = bg
        self.img += (p["bgx"] * self.x + p["bgy"] * self.y)[:, None]
        self.max_yaw = float(np.abs(yaw).max())

    def region(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice] | None:
        """Pixel rows and columns that hold the face-space box in every image of the batch."""
        p = self.p
        m = 0.1 * self.max_yaw + 0.3 * self.max_yaw * max(abs(u0), abs(u1))
        uu = np.array([u0 - m, u1 + m, u0 - m, u1 + m])[None]
        vv = np.array([v0, v0, v1, v1])[None]
        sc = (p["scale"] * _FACE_SCALE)[:, 0, 0, None]
        c, s = np.cos(p["rot"])[:, 0, 0, None], np.sin(p["rot"])[:, 0, 0, None]
        xs = sc * (c * uu - s * vv) + p["tx"][:, 0, 0, None]
        ys = sc * (s * uu + c * vv) + p["ty"][:, 0, 0, None]
        n = self.size

        def span(a: np.ndarray) -> tuple[int, int]:
            lo = int(np.floor((a.min() + 1) * n / 2)) - 2
            hi = int(np.ceil((a.max() + 1) * n / 2)) + 2
            return max(lo, 0), min(hi, n)

        (c0, c1), (r0, r1) = span(xs), span(ys)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def cov(self, d: np.ndarray, soft: float = 1.0) -> np.ndarray:
        """Coverage in [0, 1] of a signed distance (face units, negative inside)."""
        ipx = self.ipx if soft == 1.0 else self.ipx / np.float32(soft)
        out = np.multiply(d, -ipx)
        out += np.float32(0.5)
        return np.clip(out, 0.0, 1.0, out=out)

    def paint(self, region: tuple[slice, slice], cover: np.ndarray, color: np.ndarray) -> None:
        view = self.img[:, :, region[0], region[1]]
        view += cover[:, None] * (color - view)


def _side(right: np.ndarray, left_value: np.ndarray, right_value: np.ndarray) -> np.ndarray:
    """Per-pixel choice of a per-image parameter for the subject's left or right half."""
    if np.array_equal(left_value, right_value):
        return left_value
    return np.where(right, right_value, left_value)


def render_batch(
    ident: dict[str, np.ndarray],
    intensity: np.ndarray,
    pose: dict[str, np.ndarray],
    size: int,
    channels: int,
) -> np.ndarray:
    """``uint8 (n, size, size, channels)`` faces; ``intensity`` is ``(n, len(RENDER_AUS), 2)`` (left, right)."""
    f32 = np.float32
    col = lambda a: a.astype(f32)[:, None, None]  # noqa: E731
    p = {k: col(v) for k, v in {**ident, **pose}.items() if v.ndim == 1}
    colors = {k: v.astype(f32) for k, v in {**ident, **pose}.items() if v.ndim == 2}
    if channels == 1:
        colors = {k: v @ _LUMA for k, v in colors.items()}
        colors = {k: v[:, None] for k, v in colors.items()}
    colors = {k: v[:, :, None, None] for k, v in colors.items()}

    def const(rgb: tuple[float, float, float], grey: float) -> np.ndarray:
        return np.array(rgb if channels == 3 else (grey,), f32)[:, None, None]

    skin, hair = colors["skin"], colors["hair"]
    lip = skin * const((0.86, 0.6, 0.62), 0.68)
    brow = np.minimum(hair * f32(0.85), skin * f32(0.5))
    lash = np.minimum(hair * f32(0.6), skin * f32(0.35))
    shadow = skin * f32(0.55)
    mouth_in = np.broadcast_to(const((70, 24, 30), 39), skin.shape)
    teeth = np.broadcast_to(const((232, 226, 212), 226), skin.shape)
    sclera = np.broadcast_to(const((240, 236, 230), 236), skin.shape)
    cheek = np.minimum(skin * const((1.12, 1.0, 1.0), 1.08), f32(255))

    al, ar = intensity[:, :, 0], intensity[:, :, 1]
    A = {au: col(np.maximum(al[:, i], ar[:, i])) for i, au in enumerate(RENDER_AUS)}
    L = {au: col(al[:, AU_COLUMN[au]]) for au in (12, 14)}
    R = {au: col(ar[:, AU_COLUMN[au]]) for au in (12, 14)}

    cv = _Canvas(p, colors["bg"], size, channels)
    u, v, uf, au, au0 = cv.u, cv.v, cv.uf, cv.au, cv.au0

    # hair (behind the head)
    reg = cv.region(-1.2, 1.2, -1.1, 0.7)
    if reg:
        uu, vv = u[:, reg[0], reg[1]], v[:, reg[0], reg[1]]
        rx, ry = p["hrx"] * p["fw"], p["hry"]
        f = np.square(uu / rx) + np.square((vv + f32(0.1)) / ry)
        d = np.maximum((f - f32(1)) * (f32(0.5) * ry), vv - p["hbot"])
        cv.paint(reg, cv.cov(d), hair)
    # neck and ears
    reg = cv.region(-0.8, 0.8, -0.2, 1.1)
    if reg:
        uu, vv, aa = u[:, reg[0], reg[1]], v[:, reg[0], reg[1]], au0[:, reg[0], reg[1]]
        d = np.maximum(aa - f32(0.5) * p["fw"], f32(0.4) - vv)
        cv.paint(reg, cv.cov(d), skin * f32(0.8))
        f = np.square((aa - p["fw"]) * f32(1 / 0.075)) + np.square((vv - f32(0.02)) * f32(1 / 0.15))
        cv.paint(reg, cv.cov((f - f32(1)) * f32(0.04)), skin * f32(0.88))
    # face oval, egg-shaped, chin lowered by the jaw drop
    reg = cv.region(-0.75, 0.75, -0.9, 1.05)
    if reg:
        uu, vv = u[:, reg[0], reg[1]], v[:, reg[0], reg[1]]
        fhb = p["fhb"] + f32(0.09) * A[26]
        vn = vv * np.where(vv > 0, f32(1) / fhb, f32(1) / p["fht"])
        w = f32(1) - p["taper"] * np.clip(vn, 0, 1)
        f = np.square(uu / (p["fw"] * w)) + np.square(vn)
        cover = cv.cov((f - f32(1)) * (f32(0.5) * p["fw"]))
        cv.paint(reg, cover, skin)
        # soft shading towards the rim gives the oval some volume
        view = cv.img[:, :, reg[0], reg[1]]
        view *= (f32(1) - f32(0.22) * np.clip(f - f32(0.35), 0, 1) * cover)[:, None]

    # eyes, brows and the upper face
    ex, ey, ew = p["ex"], p["ey"], p["ew"]
    reg = cv.region(-0.5, 0.5, -0.5, 0.12)
    if reg:
        uu, vv, aa = uf[:, reg[0], reg[1]], v[:, reg[0], reg[1]], au[:, reg[0], reg[1]]
        # forehead wrinkles (AU1 + AU2)
        fw_s = f32(0.5) * (A[1] + A[2])
        if fw_s.max() > 0:
            y0 = ey - p["bgap"] - f32(0.1)
            t = (y0 - vv) * f32(1 / 0.055)
            dl = np.abs(t - np.round(t)) * f32(0.055) - f32(0.006)
            d = np.maximum(dl, np.maximum(aa - f32(0.2), np.abs(t - f32(1.5)) - f32(1.6)))
            cv.paint(reg, cv.cov(d) * (f32(0.55) * fw_s), shadow)
        # eye socket shade
        du = aa - ex
        dv = vv - ey
        f = np.square(du / (ew * f32(1.5))) + np.square((dv + f32(0.025)) * f32(1 / 0.075))
        cv.paint(reg, np.clip(f32(1) - f, 0, 1) * f32(0.25), shadow)
        # eye opening: between the upper and the lower lid parabolas
        closed = np.clip(f32(1) - f32(1.1) * np.maximum(A[43], A[45]), 0, 1)
        h_up = (
            p["eh"]
            * np.clip(f32(1) + f32(1.1) * A[5] - f32(0.4) * A[7] - f32(0.2) * A[4] - f32(0.2) * A[6], 0, None)
            * closed
        )
        h_lo = (
            p["eh"]
            * f32(0.75)
            * np.clip(f32(1) - f32(0.6) * A[6] - f32(0.5) * A[7] + f32(0.15) * A[5], 0, None)
            * closed
        )
        w = f32(1) - np.square(du / ew)
        up = h_up * w
        d_eye = np.maximum(np.maximum(-up - dv, dv - h_lo * w), np.abs(du) - ew)
        eye = cv.cov(d_eye)
        cv.paint(reg, eye, sclera)
        dx = du - p["gaze"] * np.sign(uu)
        d_iris = (np.square(dx) + np.square(dv) - np.square(p["ri"])) / (f32(2) * p["ri"])
        cv.paint(reg, cv.cov(d_iris) * eye, colors["iris"])
        pupil = cv.cov(d_iris + f32(0.5) * p["ri"]) * eye
        cv.paint(reg, pupil, np.broadcast_to(f32(15), lash.shape))
        # lash line on the upper lid; a closed lid curves down
        lash_y = -up + (f32(1) - closed) * f32(0.012) * np.clip(w, 0, None)
        d = np.maximum(np.abs(dv - lash_y) - f32(0.011), np.abs(du) - ew * f32(1.05))
        cv.paint(reg, cv.cov(d), lash)
        # cheek raise: lower-lid bulge and a lit cheek (AU6)
        if A[6].max() > 0:
            d = np.maximum(np.abs(dv - h_lo * w - f32(0.028)) - f32(0.008), np.abs(du) - ew * f32(0.9))
            cv.paint(reg, cv.cov(d) * (f32(0.6) * A[6]), shadow)
            f = np.square((du - f32(0.02)) * f32(1 / 0.12)) + np.square((dv - f32(0.17)) * f32(1 / 0.07))
            cv.paint(reg, np.clip(f32(1) - f, 0, 1) * (f32(0.7) * A[6]), cheek)
        # brows: an arched band; AU1 raises the inner end, AU2 the outer, AU4 lowers and
        # draws them together, AU9 pulls the inner end down a little
        bx = ex + f32(0.01) - f32(0.04) * A[4]
        bw = p["bw"]
        t = (aa - bx) / bw
        r_in = f32(0.075) * A[1] - f32(0.03) * A[4] - f32(0.015) * A[9]
        r_out = f32(0.07) * A[2]
        by = ey - p["bgap"] + f32(0.045) * A[4] + f32(0.015) * A[9]
        vb = by - p["arch"] * (f32(1) - np.square(t)) - f32(0.5) * (r_in + r_out) - f32(0.5) * (r_out - r_in) * t
        d = np.maximum(np.abs(vv - vb) - p["bth"] * (f32(1) - f32(0.35) * t), np.abs(t) - f32(1))
        cv.paint(reg, cv.cov(d), brow)
        # vertical frown lines between the brows (AU4)
        if A[4].max() > 0:
            d = np.maximum(np.abs(aa - f32(0.035)) - f32(0.007), np.abs(vv - by - f32(0.04)) - f32(0.06))
            cv.paint(reg, cv.cov(d) * (f32(0.7) * A[4]), shadow)

    # nose, nasolabial folds, mouth and chin
    reg = cv.region(-0.5, 0.5, -0.12, 0.95)
    if reg:
        uu, vv, aa = uf[:, reg[0], reg[1]], v[:, reg[0], reg[1]], au[:, reg[0], reg[1]]
        right = uu < 0
        ny = p["ny"] - f32(0.025) * A[9] - f32(0.008) * A[10]
        nw = p["nw"] * (f32(1) + f32(0.3) * A[9])
        # ridge shadow and the nose wrinkles of AU9
        d = np.maximum(np.abs(uu - f32(0.05)) - f32(0.012), np.abs(vv - f32(0.5) * (ey + ny)) - f32(0.45) * (ny - ey))
        cv.paint(reg, cv.cov(d, soft=2.0) * f32(0.25), shadow)
        if A[9].max() > 0:
            t = (vv - ey) * f32(1 / 0.035)
            dl = np.abs(t - np.round(t)) * f32(0.035) - f32(0.006)
            d = np.maximum(dl, np.maximum(aa - f32(0.08), np.abs(t - f32(1.5)) - f32(1.5)))
            cv.paint(reg, cv.cov(d) * (f32(0.8) * A[9]), shadow)
        f = np.square((vv - ny - f32(0.03)) * f32(1 / 0.025)) + np.square(uu / (nw * f32(1.4)))
        cv.paint(reg, np.clip(f32(1) - f, 0, 1) * f32(0.3), shadow)
        f = np.square((aa - nw) * f32(1 / 0.028)) + np.square((vv - ny) * f32(1 / 0.018))
        cv.paint(reg, cv.cov((f - f32(1)) * f32(0.012)), shadow * f32(0.7))
        # mouth: per side width and corner height (contempt acts on one side only)
        a12 = _side(right, L[12], R[12])
        a14 = _side(right, L[14], R[14])
        mw = p["mw"] * (
            f32(1) + f32(0.18) * a12 + f32(0.32) * A[20] - f32(0.12) * A[23] - f32(0.08) * A[24] - f32(0.06) * a14
        )
        cdy = f32(-0.06) * a12 + f32(0.055) * A[15] + f32(0.012) * A[20] + f32(0.02) * A[17] - f32(0.008) * a14
        my = p["my"] + f32(0.03) * A[26]
        t2 = np.square(aa / mw)
        bow = f32(1) - t2
        mc = my + cdy * t2 - f32(0.015) * A[17] * bow
        press = f32(1) - A[24]
        o_up = (f32(0.012) * A[25] + f32(0.018) * A[26] + f32(0.018) * A[10]) * press
        o_lo = (f32(0.012) * A[25] + f32(0.09) * A[26]) * press
        ue = mc - o_up * bow - f32(0.012) * A[10] * bow
        le = mc + o_lo * bow
        thin = np.clip(f32(1) - f32(0.5) * A[23] - f32(0.6) * A[24] - f32(0.3) * A[20], f32(0.15), None)
        top = ue - p["lu"] * thin * (f32(1) - f32(0.5) * t2)
        bot = le + p["ll"] * thin * (f32(1) + f32(0.3) * A[17]) * (f32(1) - f32(0.5) * t2)
        edge = aa - mw
        # nasolabial folds: nose wing to just outside the mouth corner
        fold = np.clip(
            f32(0.1) + f32(0.45) * a12 + f32(0.35) * A[10] + f32(0.4) * A[9] + f32(0.2) * A[6] + f32(0.15) * A[20],
            0,
            f32(0.85),
        )
        x0, y0 = nw + f32(0.035), ny - f32(0.015)
        x1, y1 = mw + f32(0.035), my + cdy + f32(0.03)
        s = np.clip((vv - y0) / (y1 - y0), 0, 1)
        xl = x0 + (x1 - x0) * s + f32(0.06) * s * (f32(1) - s)
        d = np.maximum(np.abs(aa - xl) - f32(0.01), np.abs(vv - f32(0.5) * (y0 + y1)) - f32(0.5) * (y1 - y0))
        cv.paint(reg, cv.cov(d, soft=2.0) * fold, shadow)
        # lips, then the dark opening with the upper teeth in it
        cv.paint(reg, cv.cov(np.maximum(np.maximum(top - vv, vv - bot), edge)), lip)
        inside = cv.cov(np.maximum(np.maximum(ue - vv, vv - le) - f32(0.006), edge))
        cv.paint(reg, inside, mouth_in)
        if (o_up + o_lo).max() > 0:
            cv.paint(reg, inside * cv.cov(vv - ue - f32(0.028)) * np.clip((o_up + o_lo) * f32(60), 0, 1), teeth)
        # dimples (AU14) and the chin boss crease (AU17)
        if a14.max() > 0:
            f = np.square(aa - mw - f32(0.025)) + np.square(vv - my - cdy)
            cv.paint(reg, cv.cov((f - f32(0.016**2)) * f32(1 / 0.032)) * a14, shadow)
        if A[17].max() > 0:
            cy = my + p["ll"] + f32(0.07) + f32(0.02) * A[26]
            d = np.maximum(np.abs(vv - cy + f32(0.4) * np.square(aa)) - f32(0.008), aa - f32(0.09))
            cv.paint(reg, cv.cov(d) * (f32(0.7) * A[17]), shadow)

    # occluders, only for the images that have one
    occ = np.flatnonzero(pose["occ"] > 0)
    if len(occ):
        img = cv.img[occ]
        x, y = cv.x, cv.y
        kind = pose["occ_kind"][occ][:, None, None]
        q = {k: p[k][occ] for k in ("occ_x", "occ_y", "occ_w", "occ_h", "tx", "ty", "scale")}
        # hand over the mouth, glasses bar over the eyes, or a grey block anywhere
        cx = np.where(kind == 0, q["tx"], np.where(kind == 1, q["tx"], q["occ_x"]))
        cy = np.where(
            kind == 0,
            q["ty"] + f32(0.55) * q["scale"],
            np.where(kind == 1, q["ty"] - f32(0.1) * q["scale"], q["occ_y"]),
        )
        hw = np.where(kind == 2, q["occ_w"], f32(0.75) * q["scale"])
        hh = np.where(kind == 0, f32(0.3) * q["scale"], np.where(kind == 1, f32(0.08) * q["scale"], q["occ_h"]))
        d = np.maximum(np.abs(x - cx) - hw, np.abs(y - cy) - hh)
        cover = np.clip(f32(0.5) - d * f32(size / 2.0), 0, 1)[:, None]
        grey = np.broadcast_to(f32(128), skin[occ].shape)
        color = np.where(kind[:, None] == 0, skin[occ] * f32(0.95), np.where(kind[:, None] == 1, f32(20), grey))
        img += cover * (color - img)
        cv.img[occ] = img

    # lighting, contrast and sensor noise
    img = cv.img
    light = p["gain"] + p["lx"] * cv.x + p["ly"] * cv.y
    img *= light[:, None]
    img -= f32(128)
    img *= p["contrast"][:, None]
    img += f32(128)
    noise = np.random.default_rng(int(pose["noise_seed"][0])).standard_normal(img.shape, dtype=f32)
    noise *= p["noise"][:, None]
    img += noise
    np.clip(img, 0, 255, out=img)
    return np.rint(img, out=img).astype(np.uint8).transpose(0, 2, 3, 1)
