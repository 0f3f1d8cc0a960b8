"""Client-side encryption of column values as OpenPGP symmetric-key messages (RFC 4880).

Written in the profile PostgreSQL's ``pgp_sym_encrypt`` uses by default (contract §6): a version-4
symmetric-key session packet with an iterated and salted SHA-1 S2K and AES-128, then a symmetrically
encrypted integrity-protected packet (MDC) holding a literal packet in text mode (``t``). So SQL
can always read a value with ``pgp_sym_decrypt(column, key)``, the key never travels to the server,
and servers without pgcrypto work too. The decoder reads what ``pgp_sym_encrypt`` writes (also
AES-192/256, other S2K hashes, zip/zlib compression, partial body lengths) and checks the MDC, so
a wrong key is an error, never garbage.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import zlib
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # OpenPGP needs CFB; cryptography >= 44 keeps it among the "decrepit" modes
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from queuer.model import ConfigurationError, DecryptionError

_CIPHER_KEY_BYTES = {7: 16, 8: 24, 9: 32}  # AES-128, AES-192, AES-256
_HASHES = {1: "md5", 2: "sha1", 3: "ripemd160", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_BLOCK = 16
_AES128, _SHA1 = 7, 2


def _s2k(passphrase: bytes, hash_algo: int, salt: bytes, count: int | None, key_len: int) -> bytes:
    """String-to-key (RFC 4880 §3.7.1): simple (no salt), salted, or iterated and salted."""
    name = _HASHES.get(hash_algo)
    if name is None:
        raise DecryptionError(f"unsupported S2K hash algorithm {hash_algo}")
    data = salt + passphrase
    if count is not None and count > len(data):
        data = (data * (count // len(data) + 1))[:count]
    key = b""
    preload = 0
    while len(key) < key_len:
        h = hashlib.new(name)
        h.update(b"\x00" * preload + data)
        key += h.digest()
        preload += 1
    return key[:key_len]


def _header(tag: int, length: int) -> bytes:
    """A new-format packet header with a fixed length."""
    if length < 192:
        return bytes((0xC0 | tag, length))
    if length < 8384:
        length -= 192
        return bytes((0xC0 | tag, (length >> 8) + 192, length & 0xFF))
    return bytes((0xC0 | tag, 0xFF)) + struct.pack(">I", length)


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """Split a packet stream into (tag, body), old and new formats, partial lengths included."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        pos += 1
        if not first & 0x80:
            raise DecryptionError("not an OpenPGP message (wrong key or corrupt data)")
        if first & 0x40:  # new format
            tag = first & 0x3F
            body = b""
            while True:
                octet = data[pos]
                if octet < 192:
                    length, pos = octet, pos + 1
                elif octet < 224:
                    length, pos = ((octet - 192) << 8) + data[pos + 1] + 192, pos + 2
                elif octet == 255:
                    length, pos = struct.unpack(">I", data[pos + 1 : pos + 5])[0], pos + 5
                else:  # partial body length: this chunk, then another length follows
                    chunk = 1 << (octet & 0x1F)
                    body += data[pos + 1 : pos + 1 + chunk]
                    pos += 1 + chunk
                    continue
                body += data[pos : pos + length]
                pos += length
                break
        else:  # old format
            tag = (first >> 2) & 0x0F
            kind = first & 0x03
            if kind == 3:
                length = len(data) - pos
            else:
                size = (1, 2, 4)[kind]
                length = int.from_bytes(data[pos : pos + size], "big")
                pos += size
            body = data[pos : pos + length]
            pos += length
        out.append((tag, body))
    return out


class PgpCodec:
    """Encrypts with the first key; decrypts with any of them (old keys after a key change)."""

    def __init__(self, key: str, old_keys: Sequence[str] = ()) -> None:
        if not key:
            raise ConfigurationError("the encryption key must not be empty")
        self._keys = [k.encode() for k in (key, *old_keys) if k]

    def __repr__(self) -> str:  # never show the key in logs or tracebacks
        return f"PgpCodec(<{len(self._keys)} key(s)>)"

    # -- encrypt --------------------------------------------------------------------------------
    def encrypt(self, text: str) -> bytes:
        salt = os.urandom(8)
        count_byte = 0x60 + os.urandom(1)[0] % 16  # 65,536 to 126,976 bytes hashed, like pgcrypto
        count = (16 + (count_byte & 15)) << ((count_byte >> 4) + 6)
        session_key = _s2k(self._keys[0], _SHA1, salt, count, 16)
        skesk = bytes((4, _AES128, 3, _SHA1)) + salt + bytes((count_byte,))
        payload = text.encode()
        literal_body = b"t\x00" + struct.pack(">I", int(time.time())) + payload
        literal = _header(11, len(literal_body)) + literal_body
        prefix = os.urandom(_BLOCK)
        prefix += prefix[-2:]
        mdc_input = prefix + literal + b"\xd3\x14"
        plain = mdc_input + hashlib.sha1(mdc_input).digest()
        encryptor = Cipher(algorithms.AES(session_key), CFB(b"\x00" * _BLOCK)).encryptor()
        seipd_body = b"\x01" + encryptor.update(plain) + encryptor.finalize()
        return _header(3, len(skesk)) + skesk + _header(18, len(seipd_body)) + seipd_body

    # -- decrypt --------------------------------------------------------------------------------
    def decrypt(self, data: bytes) -> str:
        try:
            packets = _packets(bytes(data))
        except (IndexError, struct.error) as exc:
            raise DecryptionError("wrong key or corrupt data: not an OpenPGP message") from exc
        skesk = next((body for tag, body in packets if tag == 3), None)
        seipd = next((body for tag, body in packets if tag == 18), None)
        if skesk is None or seipd is None:
            raise DecryptionError("wrong key or corrupt data: no symmetric-key encrypted data with MDC")
        for passphrase in self._keys:
            plain = self._try_key(passphrase, skesk, seipd)
            if plain is not None:
                return self._literal(plain)
        raise DecryptionError("wrong key or corrupt data")

    def _try_key(self, passphrase: bytes, skesk: bytes, seipd: bytes) -> bytes | None:
        if len(skesk) < 4 or skesk[0] != 4:
            raise DecryptionError("unsupported symmetric-key session packet")
        algo, s2k_type = skesk[1], skesk[2]
        key_len = _CIPHER_KEY_BYTES.get(algo)
        if key_len is None:
            raise DecryptionError(f"unsupported cipher algorithm {algo} (AES only)")
        hash_algo = skesk[3]
        if s2k_type == 0:
            salt, count, rest = b"", None, skesk[4:]
        elif s2k_type == 1:
            salt, count, rest = skesk[4:12], None, skesk[12:]
        elif s2k_type == 3:
            c = skesk[12]
            salt, count, rest = skesk[4:12], (16 + (c & 15)) << ((c >> 4) + 6), skesk[13:]
        else:
            raise DecryptionError(f"unsupported S2K type {s2k_type}")
        key = _s2k(passphrase, hash_algo, salt, count, key_len)
        if rest:  # an encrypted session key follows: algorithm byte + key, CFB with a zero IV
            decryptor = Cipher(algorithms.AES(key), CFB(b"\x00" * _BLOCK)).decryptor()
            esk = decryptor.update(rest) + decryptor.finalize()
            algo, key = esk[0], esk[1:]
            if _CIPHER_KEY_BYTES.get(algo) != len(key):
                return None
        if not seipd or seipd[0] != 1:
            raise DecryptionError("unsupported integrity-protected packet version")
        decryptor = Cipher(algorithms.AES(key), CFB(b"\x00" * _BLOCK)).decryptor()
        plain = decryptor.update(seipd[1:]) + decryptor.finalize()
        if plain[_BLOCK - 2 : _BLOCK] != plain[_BLOCK : _BLOCK + 2]:
            return None  # the quick check of RFC 4880 §5.13: not this key
        body, mdc = plain[:-20], plain[-20:]
        if not body.endswith(b"\xd3\x14") or hashlib.sha1(body).digest() != mdc:
            return None
        return body[_BLOCK + 2 : -2]

    def _literal(self, packets_data: bytes) -> str:
        for tag, body in _packets(packets_data):
            if tag == 8:  # compressed: 1 = zip (raw deflate), 2 = zlib
                algo, compressed = body[0], body[1:]
                if algo == 1:
                    return self._literal(zlib.decompress(compressed, -15))
                if algo == 2:
                    return self._literal(zlib.decompress(compressed))
                raise DecryptionError(f"unsupported compression algorithm {algo}")
            if tag == 11:
                name_len = body[1]
                return body[2 + name_len + 4 :].decode()
        raise DecryptionError("encrypted message holds no literal data")
