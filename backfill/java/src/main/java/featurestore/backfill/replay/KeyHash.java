package featurestore.backfill.replay;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

/**
 * Entity keys to partitions, byte-identical to {@code featurestore.keys}: the key values' text
 * joined by {@code \x1f} (UTF-8), hashed with Kafka's murmur2, {@code (h & 0x7fffffff) % P}.
 */
public final class KeyHash {
    public static final byte SEPARATOR = 0x1f;

    private KeyHash() {}

    /** Kafka's {@code Utils.murmur2} over {@code data[0, length)}. */
    public static int murmur2(byte[] data, int length) {
        final int seed = 0x9747b28c;
        final int m = 0x5bd1e995;
        final int r = 24;
        int h = seed ^ length;
        int length4 = length / 4;
        for (int i = 0; i < length4; i++) {
            final int i4 = i * 4;
            int k = (data[i4] & 0xff) + ((data[i4 + 1] & 0xff) << 8) + ((data[i4 + 2] & 0xff) << 16)
                    + ((data[i4 + 3] & 0xff) << 24);
            k *= m;
            k ^= k >>> r;
            k *= m;
            h *= m;
            h ^= k;
        }
        final int extra = length % 4;
        final int tail = length & ~3;
        if (extra >= 3) {
            h ^= (data[tail + 2] & 0xff) << 16;
        }
        if (extra >= 2) {
            h ^= (data[tail + 1] & 0xff) << 8;
        }
        if (extra >= 1) {
            h ^= data[tail] & 0xff;
            h *= m;
        }
        h ^= h >>> 13;
        h *= m;
        h ^= h >>> 15;
        return h;
    }

    public static int partition(byte[] encodedKey, int length, int partitions) {
        return (murmur2(encodedKey, length) & 0x7fffffff) % partitions;
    }

    /**
     * Test vectors for the Python side: reads one encoded key per line (UTF-8) from stdin and
     * prints {@code murmur2 partition} per line for {@code args[0]} partitions.
     */
    public static void main(String[] args) throws IOException {
        int partitions = Integer.parseInt(args[0]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            byte[] key = line.getBytes(StandardCharsets.UTF_8);
            out.append(murmur2(key, key.length)).append(' ').append(partition(key, key.length, partitions)).append('\n');
        }
        System.out.print(out);
        System.out.flush();
    }
}
