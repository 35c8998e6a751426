package featurestore.flink.checked;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.table.data.GenericArrayData;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.util.Collector;

/**
 * Decodes each Kafka value into the declared columns, never failing the job on a bad record.
 *
 * <p>A record that decodes becomes a row with the reason metadata NULL. A record that does not
 * becomes a row whose reason and detail say why, with placeholder columns (NULL where the column is
 * nullable, 0 / '' / FALSE / empty where it is NOT NULL: never read them), but only when the query
 * reads the {@code reason} metadata column, so that it can tell the two apart; a declaration without
 * it drops bad records. The {@code bytes} metadata is the value exactly as it came from Kafka.
 *
 * <p>Metrics, in the source operator's group {@code featurestore}: {@code records} (all values seen),
 * {@code deadLetters} (the bad ones) and, per reason, {@code reason.<reason>.deadLetters}.
 */
final class CheckedDeserializer implements DeserializationSchema<RowData> {
    private static final long serialVersionUID = 1L;

    private final RecordReader.Encoding encoding;
    private final String schemaText;
    private final RowType columns;
    private final List<String> metadataKeys;
    private final TypeInformation<RowData> producedType;

    private transient RecordReader reader;
    private transient Object[] values;
    private transient Object[] placeholders;
    private transient int reasonPos;
    private transient int detailPos;
    private transient int bytesPos;
    private transient MetricGroup metrics;
    private transient Counter records;
    private transient Counter deadLetters;
    private transient Map<String, Counter> byReason;

    CheckedDeserializer(RecordReader.Encoding encoding, String schemaText, RowType columns, List<String> metadataKeys,
            TypeInformation<RowData> producedType) {
        this.encoding = encoding;
        this.schemaText = schemaText;
        this.columns = columns;
        this.metadataKeys = List.copyOf(metadataKeys);
        this.producedType = producedType;
    }

    @Override
    public void open(InitializationContext context) {
        reader = new RecordReader(encoding, schemaText, columns);
        int arity = columns.getFieldCount();
        values = new Object[arity];
        placeholders = new Object[arity];
        for (int i = 0; i < arity; i++) {
            placeholders[i] = placeholder(columns.getTypeAt(i));
        }
        reasonPos = position(CheckedDecodingFormat.REASON);
        detailPos = position(CheckedDecodingFormat.DETAIL);
        bytesPos = position(CheckedDecodingFormat.BYTES);
        metrics = context.getMetricGroup().addGroup("featurestore");
        records = metrics.counter("records");
        deadLetters = metrics.counter("deadLetters");
        byReason = new HashMap<>();
    }

    private int position(String key) {
        int i = metadataKeys.indexOf(key);
        return i < 0 ? -1 : columns.getFieldCount() + i;
    }

    /** The row of {@code message}, or null when it is bad and this declaration drops bad records. */
    @Override
    public RowData deserialize(byte[] message) {
        RowData[] out = new RowData[1];
        deserialize(message, new Collector<RowData>() {
            @Override
            public void collect(RowData row) {
                out[0] = row;
            }

            @Override
            public void close() {}
        });
        return out[0];
    }

    @Override
    public void deserialize(byte[] message, Collector<RowData> out) {
        records.inc();
        int arity = values.length;
        GenericRowData row = new GenericRowData(arity + metadataKeys.size());
        try {
            reader.read(message, values);
            for (int i = 0; i < arity; i++) {
                row.setField(i, values[i]);
            }
        } catch (BadRecord bad) {
            deadLetters.inc();
            byReason.computeIfAbsent(bad.reason, r -> metrics.addGroup("reason", r).counter("deadLetters")).inc();
            if (reasonPos < 0) {
                return; // this declaration cannot tell bad rows from good ones: drop (counted)
            }
            for (int i = 0; i < arity; i++) {
                row.setField(i, placeholders[i]);
            }
            row.setField(reasonPos, StringData.fromString(bad.reason));
            if (detailPos >= 0) {
                row.setField(detailPos, StringData.fromString(bad.detail));
            }
        }
        if (bytesPos >= 0) {
            row.setField(bytesPos, message); // Kafka hands a fresh array per record: no copy needed
        }
        out.collect(row);
    }

    /** What a bad row carries in a column: NULL if the column is nullable, else the type's zero. */
    private static Object placeholder(LogicalType type) {
        if (type.isNullable()) {
            return null;
        }
        switch (type.getTypeRoot()) {
            case BIGINT:
                return 0L;
            case INTEGER:
                return 0;
            case FLOAT:
                return 0f;
            case DOUBLE:
                return 0d;
            case BOOLEAN:
                return false;
            case CHAR:
            case VARCHAR:
                return StringData.fromString("");
            case BINARY:
            case VARBINARY:
                return new byte[0];
            case ARRAY:
                return new GenericArrayData(new Object[0]);
            case TIMESTAMP_WITHOUT_TIME_ZONE:
            case TIMESTAMP_WITH_LOCAL_TIME_ZONE:
                return TimestampData.fromEpochMillis(0);
            default:
                throw new IllegalStateException("no placeholder for " + type);
        }
    }

    @Override
    public boolean isEndOfStream(RowData nextElement) {
        return false;
    }

    @Override
    public TypeInformation<RowData> getProducedType() {
        return producedType;
    }
}
