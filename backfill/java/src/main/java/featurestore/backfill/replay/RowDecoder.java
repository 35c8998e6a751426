package featurestore.backfill.replay;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;

/**
 * History rows to Flink rows: the declared columns by name, the partition from the key columns,
 * the event time, and the metadata columns. A {@link HistoryScanner} reads only the columns it
 * needs ({@link #needed()}, in that order: a projected Avro {@link RowDatumReader} skips the rest, a
 * Parquet scanner reads only their column chunks), and only the rows of owned partitions are converted.
 */
final class RowDecoder {
    static final String META_PARTITION = "partition";
    static final String META_POSITION = "position";
    static final String META_FILE_INDEX = "file-index";
    static final String META_ROW = "row-in-file";
    static final String META_FILE_PATH = "file-path";
    static final List<String> METADATA = List.of(META_PARTITION, META_POSITION, META_FILE_INDEX, META_ROW,
            META_FILE_PATH);

    private final ReplayOptions opts;
    private final LogicalTypeRoot[] roots;
    private final int width;
    private final List<String> needed;
    private final int[] fieldPos;
    private final int[] keyPos;
    private final int tsPos;
    /** Per metadata column, its index in {@link #METADATA} (decided once, not per row). */
    private final int[] metadata;
    private byte[] keyBuf = new byte[64];
    private int keyLen;

    RowDecoder(ReplayOptions opts) {
        this.opts = opts;
        this.roots = new LogicalTypeRoot[opts.fieldTypes.size()];
        for (int i = 0; i < roots.length; i++) {
            roots[i] = opts.fieldTypes.get(i).getTypeRoot();
        }
        this.width = opts.fieldNames.size() + opts.metadataKeys.size();
        Set<String> names = new LinkedHashSet<>(opts.fieldNames);
        names.addAll(opts.keyFields);
        names.add(opts.eventTimeField);
        this.needed = List.copyOf(names);
        fieldPos = new int[opts.fieldNames.size()];
        for (int i = 0; i < fieldPos.length; i++) {
            fieldPos[i] = needed.indexOf(opts.fieldNames.get(i));
        }
        keyPos = new int[opts.keyFields.size()];
        for (int i = 0; i < keyPos.length; i++) {
            keyPos[i] = needed.indexOf(opts.keyFields.get(i));
        }
        tsPos = needed.indexOf(opts.eventTimeField);
        metadata = new int[opts.metadataKeys.size()];
        for (int i = 0; i < metadata.length; i++) {
            metadata[i] = METADATA.indexOf(opts.metadataKeys.get(i));
            if (metadata[i] < 0) {
                throw new IllegalArgumentException("unknown metadata " + opts.metadataKeys.get(i));
            }
        }
    }

    /** The columns a row is read into, in the order of a scanner's values. */
    List<String> needed() {
        return needed;
    }

    /** A datum reader for an Avro file with this writer schema. */
    RowDatumReader reader(Schema writer, String path) throws IOException {
        return new RowDatumReader(writer, needed, path);
    }

    long eventTime(Object[] rec, String path, long row) throws IOException {
        Object v = get(rec, tsPos);
        if (v instanceof Long l) {
            return l;
        }
        if (v instanceof Number n) {
            return n.longValue();
        }
        throw new IOException("hdfs-replay: " + path + " row " + row + ": event time '" + opts.eventTimeField
                + "' is " + (v == null ? "null" : v.getClass().getSimpleName()) + ", not a long (ms)");
    }

    /** The key's partition: murmur2 over the values' text joined by \x1f, as featurestore.keys.partition_for. */
    int partition(Object[] rec, String path, long row) throws IOException {
        keyLen = 0;
        for (int i = 0; i < keyPos.length; i++) {
            if (i > 0) {
                put(KeyHash.SEPARATOR);
            }
            Object v = get(rec, keyPos[i]);
            if (v instanceof byte[] text) {
                putText(text, text.length, path, row);
            } else if (v instanceof Long || v instanceof Integer) {
                byte[] digits = v.toString().getBytes(StandardCharsets.US_ASCII);
                putText(digits, digits.length, path, row);
            } else if (v instanceof CharSequence s) {
                byte[] b = s.toString().getBytes(StandardCharsets.UTF_8);
                putText(b, b.length, path, row);
            } else {
                throw new IOException("hdfs-replay: " + path + " row " + row + ": key column '" + opts.keyFields.get(i)
                        + "' is " + (v == null ? "null" : v.getClass().getSimpleName())
                        + "; an entity key value must be a non-null int or string");
            }
        }
        return KeyHash.partition(keyBuf, keyLen, opts.partitions);
    }

    private void put(byte b) {
        if (keyLen == keyBuf.length) {
            keyBuf = Arrays.copyOf(keyBuf, keyBuf.length * 2);
        }
        keyBuf[keyLen++] = b;
    }

    private void putText(byte[] bytes, int len, String path, long row) throws IOException {
        if (keyLen + len > keyBuf.length) {
            keyBuf = Arrays.copyOf(keyBuf, Math.max(keyBuf.length * 2, keyLen + len));
        }
        for (int i = 0; i < len; i++) {
            if (bytes[i] == KeyHash.SEPARATOR) {
                throw new IOException("hdfs-replay: " + path + " row " + row
                        + ": a key value contains the reserved character \\x1f");
            }
        }
        System.arraycopy(bytes, 0, keyBuf, keyLen, len);
        keyLen += len;
    }

    RowData toRow(Object[] rec, int partition, int fileIndex, long row, StringData filePath) {
        GenericRowData out = new GenericRowData(width);
        for (int i = 0; i < fieldPos.length; i++) {
            out.setField(i, convert(roots[i], get(rec, fieldPos[i])));
        }
        int m = fieldPos.length;
        for (int kind : metadata) {
            Object value;
            switch (kind) {
                case 0 -> value = partition;
                case 1 -> value = ((long) fileIndex << 32) | row;
                case 2 -> value = fileIndex;
                case 3 -> value = row;
                default -> value = filePath;
            }
            out.setField(m++, value);
        }
        return out;
    }

    private static Object get(Object[] rec, int pos) {
        return rec[pos];
    }

    private static Object convert(LogicalTypeRoot root, Object v) {
        if (v == null) {
            return null;
        }
        switch (root) {
            case BIGINT:
                return ((Number) v).longValue();
            case INTEGER:
                return ((Number) v).intValue();
            case SMALLINT:
                return ((Number) v).shortValue();
            case TINYINT:
                return ((Number) v).byteValue();
            case DOUBLE:
                return ((Number) v).doubleValue();
            case FLOAT:
                return ((Number) v).floatValue();
            case BOOLEAN:
                return v;
            case CHAR:
            case VARCHAR:
                if (v instanceof byte[] text) {
                    return StringData.fromBytes(text); // a fresh array per value: safe to wrap
                }
                return StringData.fromString(v.toString());
            case TIMESTAMP_WITHOUT_TIME_ZONE:
            case TIMESTAMP_WITH_LOCAL_TIME_ZONE:
                return TimestampData.fromEpochMillis(((Number) v).longValue());
            default:
                throw new IllegalStateException("unsupported type " + root);
        }
    }

    static boolean supported(LogicalType type) {
        switch (type.getTypeRoot()) {
            case BIGINT, INTEGER, SMALLINT, TINYINT, DOUBLE, FLOAT, BOOLEAN, CHAR, VARCHAR,
                    TIMESTAMP_WITHOUT_TIME_ZONE, TIMESTAMP_WITH_LOCAL_TIME_ZONE:
                return true;
            default:
                return false;
        }
    }
}
