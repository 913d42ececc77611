// A hospital application's data access written as PgJDBC users write it, run through pgseal by
// tests/tests/e2e/drivers.rs. Prints one tab-separated line per result for the test to check.
//
// Usage: java -cp postgresql.jar:. HospitalClient JDBC_URL NIR_PREFIX
// (the URL carries user, password and stringtype; NIR_PREFIX is 11 digits, unique per run).

import java.sql.Connection;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;

public class HospitalClient {
    /** A valid NIR from its 13-digit body: the key is 97 - body mod 97. */
    static String nir(String body) {
        long n = Long.parseLong(body);
        return body + String.format("%02d", 97 - n % 97);
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        String prefix = args[1];
        try (Connection c = DriverManager.getConnection(url)) {
            // A batch insert: setString for sealed text columns, setDate for a sealed date.
            try (PreparedStatement insert = c.prepareStatement(
                    "INSERT INTO patients (nir, last_name, first_name, birth_date, city) VALUES (?, ?, ?, ?, ?)")) {
                for (int i = 1; i <= 3; i++) {
                    insert.setString(1, nir(prefix + String.format("%02d", i)));
                    insert.setString(2, "Lefèvre-" + i);
                    insert.setString(3, "Élodie");
                    insert.setDate(4, Date.valueOf("1992-07-0" + i));
                    insert.setString(5, "Lyon");
                    insert.addBatch();
                }
                int[] counts = insert.executeBatch();
                System.out.println("batch\t" + counts.length);
            }
            // A consultation with setTimestamp, keyed by the generated id.
            long id;
            try (PreparedStatement find = c.prepareStatement("SELECT id FROM patients WHERE nir = ?")) {
                find.setString(1, nir(prefix + "01"));
                try (ResultSet rs = find.executeQuery()) {
                    rs.next();
                    id = rs.getLong(1);
                }
            }
            try (PreparedStatement consult = c.prepareStatement(
                    "INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes) VALUES (?, ?, ?, ?)")) {
                consult.setLong(1, id);
                consult.setTimestamp(2, Timestamp.valueOf("2024-03-01 09:30:00"));
                consult.setString(3, "E11.9");
                consult.setString(4, "Suivi diabète");
                System.out.println("consultation\t" + consult.executeUpdate());
            }
            // The same lookup many times: past prepareThreshold PgJDBC switches to a named
            // server-side statement (and binary transfer for the types it knows).
            try (PreparedStatement lookup = c.prepareStatement(
                    "SELECT last_name, first_name, birth_date FROM patients WHERE nir = ? AND last_name = ?")) {
                for (int round = 0; round < 8; round++) {
                    int i = 1 + round % 3;
                    lookup.setString(1, nir(prefix + String.format("%02d", i)));
                    lookup.setString(2, "Lefèvre-" + i);
                    try (ResultSet rs = lookup.executeQuery()) {
                        while (rs.next()) {
                            System.out.println("row\t" + round + "\t" + rs.getString(1) + "\t"
                                    + rs.getString(2) + "\t" + rs.getDate(3));
                        }
                    }
                }
            }
            // A statement pgseal refuses, then the connection is used again.
            try (Statement st = c.createStatement()) {
                st.executeQuery("SELECT id FROM patients ORDER BY length(last_name)");
                System.out.println("refused\tnone");
            } catch (SQLException e) {
                System.out.println("refused\t" + e.getSQLState());
            }
            try (PreparedStatement count = c.prepareStatement(
                    "SELECT count(*) FROM patients WHERE city = ? AND first_name = ?")) {
                count.setString(1, "Lyon");
                count.setString(2, "Élodie");
                try (ResultSet rs = count.executeQuery()) {
                    rs.next();
                    System.out.println("count\t" + rs.getLong(1));
                }
            }
            // A transaction with an update and a read of the sealed date back.
            c.setAutoCommit(false);
            try (PreparedStatement update = c.prepareStatement(
                    "UPDATE patients SET birth_date = ? WHERE nir = ?")) {
                update.setDate(1, Date.valueOf("1990-01-31"));
                update.setString(2, nir(prefix + "03"));
                System.out.println("update\t" + update.executeUpdate());
            }
            c.commit();
            try (PreparedStatement read = c.prepareStatement(
                    "SELECT birth_date FROM patients WHERE nir = ?")) {
                read.setString(1, nir(prefix + "03"));
                try (ResultSet rs = read.executeQuery()) {
                    rs.next();
                    System.out.println("date\t" + rs.getDate(1));
                }
            }
            c.commit();
        }
    }
}
