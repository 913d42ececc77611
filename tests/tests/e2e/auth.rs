//! Authentication passes through pgseal untouched: trust, cleartext password, md5 and
//! SCRAM-SHA-256, with right and wrong passwords.

use pgseal_tests::cluster::{MD5_ROLE, PASSWORD_ROLE, SCRAM_ROLE, TRUST_ROLE};
use pgseal_tests::{TestProxy, cluster};

async fn login(
    proxy: &TestProxy,
    user: &str,
    password: &str,
) -> Result<String, tokio_postgres::Error> {
    let conninfo = proxy.conninfo(user, password, "postgres");
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn every_password_method_works_with_the_right_password() {
    let cluster = cluster();
    let proxy = TestProxy::start(cluster).await;
    for role in [TRUST_ROLE, PASSWORD_ROLE, MD5_ROLE, SCRAM_ROLE] {
        let user = login(&proxy, role, role)
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        assert_eq!(user, role);
    }
    let superuser = login(&proxy, cluster.superuser(), cluster.superuser_password())
        .await
        .unwrap();
    assert_eq!(superuser, "postgres");
    proxy.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_postgresql_s_own_error() {
    let cluster = cluster();
    let proxy = TestProxy::start(cluster).await;
    for role in [PASSWORD_ROLE, MD5_ROLE, SCRAM_ROLE] {
        let error = login(&proxy, role, "not-the-password").await.unwrap_err();
        let code = error.as_db_error().map(|e| e.code().code().to_string());
        assert_eq!(code.as_deref(), Some("28P01"), "{role}: {error}");
    }
    // An unknown database is the server's refusal too, passed on as it is.
    let conninfo = proxy.conninfo(SCRAM_ROLE, SCRAM_ROLE, "no_such_database");
    let error = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(error.as_db_error().unwrap().code().code(), "3D000");
    // And the proxy keeps serving.
    assert_eq!(
        login(&proxy, SCRAM_ROLE, SCRAM_ROLE).await.unwrap(),
        SCRAM_ROLE
    );
    proxy.stop().await;
}
