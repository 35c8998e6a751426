package featurestore.backfill.replay;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.NoSuchElementException;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.column.page.PageReadStore;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.util.HadoopInputFile;
import org.apache.parquet.io.ColumnIOFactory;
import org.apache.parquet.io.MessageColumnIO;
import org.apache.parquet.io.RecordReader;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.io.api.Converter;
import org.apache.parquet.io.api.GroupConverter;
import org.apache.parquet.io.api.PrimitiveConverter;
import org.apache.parquet.io.api.RecordMaterializer;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.PrimitiveType;
import org.apache.parquet.schema.Type;

/**
 * Reads one Parquet history file front to back (local or HDFS, through the Hadoop client), row group
 * by row group, only the needed columns' chunks. Values as {@link RowDatumReader} gives them for
 * Avro: Long, Integer, Double, Float, Boolean, UTF-8 byte[] for strings, or null; a timestamp
 * column (any unit) becomes epoch milliseconds, as the Avro history's timestamp-millis longs.
 */
final class ParquetFileScanner implements HistoryScanner {
    private final ParquetFileReader reader;
    private final MessageColumnIO columns;
    private final Materializer materializer;
    private RecordReader<Object[]> records;
    private long leftInGroup;
    private long nextRow;

    ParquetFileScanner(String path, List<String> needed) throws IOException {
        Path p = new Path(path);
        reader = ParquetFileReader.open(HadoopInputFile.fromPath(p, FileLister.hadoopConf()));
        try {
            MessageType file = reader.getFooter().getFileMetaData().getSchema();
            List<Type> fields = new ArrayList<>();
            for (Type field : file.getFields()) { // in the file's order: the projection keeps it
                if (needed.contains(field.getName())) {
                    fields.add(field);
                }
            }
            for (String name : needed) {
                if (!file.containsField(name)) {
                    throw new IOException("hdfs-replay: " + path + " has no field '" + name + "' (its fields: "
                            + file.getFields().stream().map(Type::getName).toList() + ")");
                }
            }
            MessageType projection = new MessageType(file.getName(), fields);
            reader.setRequestedSchema(projection);
            columns = new ColumnIOFactory().getColumnIO(projection, file);
            materializer = new Materializer(projection, needed, path);
        } catch (IOException | RuntimeException e) {
            reader.close();
            throw e;
        }
    }

    @Override
    public boolean hasNext() throws IOException {
        while (leftInGroup == 0) {
            PageReadStore group = reader.readNextRowGroup();
            if (group == null) {
                return false;
            }
            leftInGroup = group.getRowCount();
            records = columns.getRecordReader(group, materializer);
        }
        return true;
    }

    @Override
    public Object[] next() throws IOException {
        if (!hasNext()) {
            throw new NoSuchElementException();
        }
        Object[] values = records.read();
        leftInGroup--;
        nextRow++;
        return values;
    }

    @Override
    public long row() {
        return nextRow - 1;
    }

    @Override
    public void close() throws IOException {
        reader.close();
    }

    /** One flat record into the needed values' array (reused: a null column leaves a null). */
    private static final class Materializer extends RecordMaterializer<Object[]> {
        private final Object[] values;
        private final GroupConverter root;

        Materializer(MessageType projection, List<String> needed, String path) throws IOException {
            values = new Object[needed.size()];
            Converter[] converters = new Converter[projection.getFieldCount()];
            for (int i = 0; i < converters.length; i++) {
                Type field = projection.getType(i);
                if (!field.isPrimitive() || field.isRepetition(Type.Repetition.REPEATED)) {
                    throw new IOException("hdfs-replay: " + path + ": column '" + field.getName()
                            + "' is not a flat column (" + field + ")");
                }
                converters[i] = converter(field.asPrimitiveType(), needed.indexOf(field.getName()), path);
            }
            root = new GroupConverter() {
                @Override
                public Converter getConverter(int fieldIndex) {
                    return converters[fieldIndex];
                }

                @Override
                public void start() {
                    Arrays.fill(values, null);
                }

                @Override
                public void end() {}
            };
        }

        @Override
        public Object[] getCurrentRecord() {
            return values;
        }

        @Override
        public GroupConverter getRootConverter() {
            return root;
        }

        private PrimitiveConverter converter(PrimitiveType type, int slot, String path) throws IOException {
            LogicalTypeAnnotation logical = type.getLogicalTypeAnnotation();
            boolean plainInt = logical == null || logical instanceof LogicalTypeAnnotation.IntLogicalTypeAnnotation;
            switch (type.getPrimitiveTypeName()) {
                case INT64:
                    if (logical instanceof LogicalTypeAnnotation.TimestampLogicalTypeAnnotation ts) {
                        long perMs = switch (ts.getUnit()) {
                            case MILLIS -> 1;
                            case MICROS -> 1_000;
                            case NANOS -> 1_000_000;
                        };
                        return new PrimitiveConverter() {
                            @Override
                            public void addLong(long value) {
                                values[slot] = Math.floorDiv(value, perMs);
                            }
                        };
                    }
                    if (plainInt) {
                        return new Slot(slot);
                    }
                    break;
                case INT32:
                    if (plainInt) {
                        return new Slot(slot);
                    }
                    break;
                case DOUBLE, FLOAT, BOOLEAN:
                    return new Slot(slot);
                case BINARY:
                    if (logical == null || logical instanceof LogicalTypeAnnotation.StringLogicalTypeAnnotation
                            || logical instanceof LogicalTypeAnnotation.EnumLogicalTypeAnnotation) {
                        return new Slot(slot);
                    }
                    break;
                default:
                    break;
            }
            throw new IOException("hdfs-replay: " + path + ": Parquet column '" + type.getName() + "' of type " + type
                    + " is not supported for a replayed column (int32, int64, timestamp, double, float, boolean, string)");
        }

        /** A column's values, boxed, into its slot: the reader calls only the method of the column's type. */
        private final class Slot extends PrimitiveConverter {
            private final int slot;

            Slot(int slot) {
                this.slot = slot;
            }

            @Override
            public void addLong(long value) {
                values[slot] = value;
            }

            @Override
            public void addInt(int value) {
                values[slot] = value;
            }

            @Override
            public void addDouble(double value) {
                values[slot] = value;
            }

            @Override
            public void addFloat(float value) {
                values[slot] = value;
            }

            @Override
            public void addBoolean(boolean value) {
                values[slot] = value;
            }

            @Override
            public void addBinary(Binary value) {
                values[slot] = value.getBytes().clone(); // a dictionary's bytes are shared
            }
        }
    }
}
