package featurestore.backfill.replay;

import java.io.IOException;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.io.DatumReader;
import org.apache.avro.io.Decoder;

/**
 * Decodes an Avro record straight into an array of the needed fields' values (Long, Integer,
 * Double, Float, Boolean, UTF-8 byte[] for strings and enums, or null), skipping the others:
 * no GenericRecord, no Utf8, no schema resolution. The array is reused between records.
 */
final class RowDatumReader implements DatumReader<Object[]> {
    private final Schema[] writerFields;
    private final int[] slotOf;
    private final Object[] values;

    /** {@code needed.get(i)} lands in slot i; the writer schema must have every needed field. */
    RowDatumReader(Schema writer, List<String> needed, String path) throws IOException {
        List<Schema.Field> fields = writer.getFields();
        writerFields = new Schema[fields.size()];
        slotOf = new int[fields.size()];
        for (int i = 0; i < fields.size(); i++) {
            writerFields[i] = fields.get(i).schema();
            slotOf[i] = needed.indexOf(fields.get(i).name());
        }
        for (String name : needed) {
            if (writer.getField(name) == null) {
                throw new IOException("hdfs-replay: " + path + " has no field '" + name + "' (its fields: "
                        + fields.stream().map(Schema.Field::name).toList() + ")");
            }
        }
        values = new Object[needed.size()];
    }

    @Override
    public void setSchema(Schema schema) {}

    @Override
    public Object[] read(Object[] reuse, Decoder in) throws IOException {
        for (int i = 0; i < writerFields.length; i++) {
            int slot = slotOf[i];
            if (slot < 0) {
                GenericDatumReader.skip(writerFields[i], in);
            } else {
                values[slot] = value(writerFields[i], in);
            }
        }
        return values;
    }

    private static Object value(Schema schema, Decoder in) throws IOException {
        switch (schema.getType()) {
            case LONG:
                return in.readLong();
            case INT:
                return in.readInt();
            case DOUBLE:
                return in.readDouble();
            case FLOAT:
                return in.readFloat();
            case BOOLEAN:
                return in.readBoolean();
            case STRING: {
                int length = (int) in.readLong();
                byte[] bytes = new byte[length];
                in.readFixed(bytes, 0, length);
                return bytes;
            }
            case ENUM:
                return schema.getEnumSymbols().get(in.readEnum()).getBytes(java.nio.charset.StandardCharsets.UTF_8);
            case NULL:
                in.readNull();
                return null;
            case UNION:
                return value(schema.getTypes().get(in.readIndex()), in);
            default:
                throw new IOException("hdfs-replay: Avro type " + schema + " is not supported for a replayed column");
        }
    }
}
