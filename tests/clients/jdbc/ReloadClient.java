// A PgJDBC application holding named server-side statements while pgseal reloads its policy,
// run by tests/tests/e2e/reload.rs. It runs its statements past prepareThreshold, prints
// "ready", waits for a line on standard input (the test reloads pgseal meanwhile), then runs
// the same PreparedStatement objects again: PgJDBC prepares a statement pgseal no longer keeps
// (SQLSTATE 26000) again by itself, and the application sees no error.
//
// Usage: java -cp postgresql.jar:. ReloadClient APP_URL BILLING_URL PATIENT_ID

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;

public class ReloadClient {
    static String first(PreparedStatement statement, long id) throws Exception {
        statement.setLong(1, id);
        try (ResultSet rs = statement.executeQuery()) {
            rs.next();
            return rs.getString(1);
        }
    }

    public static void main(String[] args) throws Exception {
        long id = Long.parseLong(args[2]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        try (Connection app = DriverManager.getConnection(args[0]);
             Connection billing = DriverManager.getConnection(args[1])) {
            // `sex` is not sealed yet: its literal reaches the server as written.
            PreparedStatement count = app.prepareStatement(
                    "SELECT count(*) FROM patients WHERE sex = 'F' AND id >= ?");
            PreparedStatement phone = billing.prepareStatement(
                    "SELECT phone FROM patients WHERE id = ?");
            String counted = null;
            String seen = null;
            for (int i = 0; i < 8; i++) {
                counted = first(count, id);
                seen = first(phone, id);
            }
            System.out.println("before\t" + counted + "\t" + seen);
            System.out.println("ready");
            System.out.flush();
            in.readLine();
            for (int i = 0; i < 3; i++) {
                counted = first(count, id);
                seen = first(phone, id);
            }
            System.out.println("after\t" + counted + "\t" + seen);
        }
    }
}
