package featurestore.flink.checked;

import java.nio.charset.StandardCharsets;

/**
 * Avro's binary encoding read from one byte array, with every bound checked: a value that would
 * read past the end is {@link BadRecord#TRUNCATED}, an impossible one has its own reason. Reused
 * from record to record ({@link #reset}).
 */
final class AvroInput {
    private byte[] buf = new byte[0];
    private int pos;
    private int end;

    void reset(byte[] bytes) {
        buf = bytes;
        pos = 0;
        end = bytes.length;
    }

    int position() {
        return pos;
    }

    int remaining() {
        return end - pos;
    }

    private BadRecord truncated(int needed) {
        return new BadRecord(BadRecord.TRUNCATED,
                "needs " + needed + " more byte" + (needed == 1 ? "" : "s") + " at byte " + pos + " of " + end);
    }

    long readLong() throws BadRecord {
        long raw = 0;
        int shift = 0;
        while (true) {
            if (pos >= end) {
                throw truncated(1);
            }
            int b = buf[pos++] & 0xff;
            raw |= (long) (b & 0x7f) << shift;
            if ((b & 0x80) == 0) {
                break;
            }
            shift += 7;
            if (shift > 63) {
                throw new BadRecord(BadRecord.BAD_VARINT, "a long runs past 10 bytes at byte " + pos);
            }
        }
        return (raw >>> 1) ^ -(raw & 1);
    }

    int readInt() throws BadRecord {
        int start = pos;
        long value = readLong();
        if (pos - start > 5 || value != (int) value) {
            throw new BadRecord(BadRecord.BAD_VARINT, "an int out of 32-bit range (" + value + ") at byte " + start);
        }
        return (int) value;
    }

    boolean readBoolean() throws BadRecord {
        if (pos >= end) {
            throw truncated(1);
        }
        int b = buf[pos++];
        if (b == 0) {
            return false;
        }
        if (b == 1) {
            return true;
        }
        throw new BadRecord(BadRecord.BAD_BOOLEAN, "a boolean byte " + (b & 0xff) + " at byte " + (pos - 1));
    }

    float readFloat() throws BadRecord {
        return Float.intBitsToFloat(readFixedInt());
    }

    double readDouble() throws BadRecord {
        long lo = readFixedInt() & 0xffffffffL;
        long hi = readFixedInt() & 0xffffffffL;
        return Double.longBitsToDouble((hi << 32) | lo);
    }

    private int readFixedInt() throws BadRecord {
        if (end - pos < 4) {
            throw truncated(4 - (end - pos));
        }
        int v = (buf[pos] & 0xff) | (buf[pos + 1] & 0xff) << 8 | (buf[pos + 2] & 0xff) << 16 | (buf[pos + 3] & 0xff) << 24;
        pos += 4;
        return v;
    }

    /** A length prefix: non-negative and, since every byte of it must follow, at most what is left. */
    int readLength() throws BadRecord {
        int start = pos;
        long n = readLong();
        if (n < 0) {
            throw new BadRecord(BadRecord.BAD_LENGTH, "a negative length " + n + " at byte " + start);
        }
        if (n > end - pos) {
            throw new BadRecord(BadRecord.TRUNCATED,
                    "a length of " + n + " at byte " + start + " with " + (end - pos) + " bytes left");
        }
        return (int) n;
    }

    byte[] readBytes() throws BadRecord {
        int n = readLength();
        byte[] out = new byte[n];
        System.arraycopy(buf, pos, out, 0, n);
        pos += n;
        return out;
    }

    /** A string's UTF-8 bytes, checked to be valid UTF-8. */
    byte[] readUtf8() throws BadRecord {
        int start = pos;
        byte[] out = readBytes();
        int bad = Utf8.firstInvalid(out);
        if (bad >= 0) {
            throw new BadRecord(BadRecord.BAD_UTF8, "a string of " + out.length + " bytes at byte " + start
                    + " is not UTF-8 (at its byte " + bad + "): "
                    + new String(out, 0, Math.min(out.length, 32), StandardCharsets.UTF_8));
        }
        return out;
    }
}
