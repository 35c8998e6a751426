package featurestore.backfill.replay;

import java.io.BufferedInputStream;
import java.io.IOException;
import org.apache.avro.file.DataFileStream;
import org.apache.avro.Schema;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/** Reads one Avro history file front to back (local or HDFS, through the Hadoop client). */
final class AvroFileScanner implements HistoryScanner {
    private final DataFileStream<Object[]> stream;
    private Object[] reuse;
    private long nextRow;

    AvroFileScanner(String path, RowDecoder decoder) throws IOException {
        Path p = new Path(path);
        FileSystem fs = FileLister.fileSystem(p);
        Deferred reader = new Deferred();
        this.stream = new DataFileStream<>(new BufferedInputStream(fs.open(p, 1 << 20), 1 << 20), reader);
        reader.delegate = decoder.reader(stream.getSchema(), path);
    }

    @Override
    public boolean hasNext() {
        return stream.hasNext();
    }

    @Override
    public Object[] next() throws IOException {
        reuse = stream.next(reuse);
        nextRow++;
        return reuse;
    }

    @Override
    public long row() {
        return nextRow - 1;
    }

    /** DataFileStream wants its reader before it has read the header that says the writer schema. */
    private static final class Deferred implements org.apache.avro.io.DatumReader<Object[]> {
        RowDatumReader delegate;

        @Override
        public void setSchema(Schema schema) {}

        @Override
        public Object[] read(Object[] reuse, org.apache.avro.io.Decoder in) throws IOException {
            return delegate.read(reuse, in);
        }
    }

    @Override
    public void close() throws IOException {
        stream.close();
    }
}
