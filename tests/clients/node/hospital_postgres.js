// A hospital application's data access written as postgres.js (postgres) users write it, run
// through pgseal by tests/tests/e2e/drivers_scripted.rs. Prints one tab-separated line per result.
//
// Usage: node hospital_postgres.js CONNECTION_URL NIR_PREFIX   (NIR_PREFIX: 11 digits, unique per run)
//
// postgres.js describes each statement, then writes every value for the type the server
// described; statements are prepared (named) by default; queries issued together share the
// connection as a pipeline, each with its own Sync (Promise.all) or one Sync (sql.batch).

import postgres from 'postgres'

/** A valid NIR from its 13-digit body: the key is 97 - body mod 97. */
function nir(body) {
  return body + String(97n - BigInt(body) % 97n).padStart(2, '0')
}

const pad = (n) => String(n).padStart(2, '0')
/** A date column as postgres.js returns it (a Date at UTC midnight), as YYYY-MM-DD. */
const day = (d) => d.toISOString().slice(0, 10)

const [url, prefix] = process.argv.slice(2)
const sql = postgres(url, { max: 1, onnotice: () => {} })
try {
  // A multi-row insert from objects, dates as JS Dates; one more whose date is a string.
  const patients = [1, 2, 3].map((i) => ({
    nir: nir(prefix + pad(i)),
    last_name: `Lefèvre-${i}`,
    first_name: 'Élodie',
    birth_date: new Date(`1992-07-0${i}`),
    city: 'Lyon'
  }))
  let inserted = (await sql`
    INSERT INTO patients ${sql(patients, 'nir', 'last_name', 'first_name', 'birth_date', 'city')}
  `).count
  inserted += (await sql`
    INSERT INTO patients (nir, last_name, first_name, birth_date, city)
    VALUES (${nir(prefix + '04')}, 'Lefèvre-4', ${'Élodie'}, ${'1992-07-04'}, ${'Lyon'})
  `).count
  console.log(`inserted\t${inserted}`)

  // A consultation with a timestamptz, read back.
  const [{ id }] = await sql`SELECT id FROM patients WHERE nir = ${nir(prefix + '01')}`
  await sql`
    INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes)
    VALUES (${id}, ${new Date('2024-03-01T09:30:00+01:00')}, ${'E11.9'}, ${'Suivi diabète'})
  `
  for (const r of await sql`SELECT seen_at, diagnosis_code, notes FROM consultations WHERE patient_id = ${id}`) {
    console.log(`consultation\t${r.seen_at.toISOString().replace('.000Z', 'Z')}\t${r.diagnosis_code}\t${r.notes}`)
  }

  // Lookups by NIR and by last name, many times (prepared on first use, then reused).
  for (let round = 0; round < 8; round++) {
    const i = 1 + round % 4
    for (const r of await sql`
      SELECT last_name, first_name, birth_date FROM patients WHERE nir = ${nir(prefix + pad(i))}
    `) console.log(`nir\t${round}\t${r.last_name}\t${r.first_name}\t${day(r.birth_date)}`)
    for (const r of await sql`
      SELECT nir, birth_date FROM patients WHERE last_name = ${`Lefèvre-${i}`} AND first_name = ${'Élodie'}
    `) console.log(`name\t${round}\t${r.nir}\t${day(r.birth_date)}`)
  }

  // A statement pgseal refuses, then the same connection again.
  try {
    await sql`SELECT id FROM patients ORDER BY length(last_name)`
    console.log('refused\tnone')
  } catch (e) {
    console.log(`refused\t${e.code}`)
  }
  const [{ count }] = await sql`SELECT count(*) FROM patients WHERE city = ${'Lyon'} AND first_name = ${'Élodie'}`
  console.log(`count\t${count}`)

  // Pipelined: lookups around the refused statement, each with its own Sync.
  const piped = await Promise.allSettled([
    sql`SELECT last_name, birth_date FROM patients WHERE nir = ${nir(prefix + '01')}`,
    sql`SELECT id FROM patients ORDER BY length(last_name)`,
    sql`SELECT nir, birth_date FROM patients WHERE last_name = ${'Lefèvre-2'} AND first_name = ${'Élodie'}`
  ])
  console.log(`pipeline-refused\t${piped[1].status === 'rejected' ? piped[1].reason.code : 'none'}`)
  for (const [k, what] of [[0, 'before'], [2, 'after']]) {
    if (piped[k].status === 'rejected') console.log(`pipeline\t${what}\terror ${piped[k].reason.code} ${piped[k].reason.message}`)
    else for (const r of piped[k].value) console.log(`pipeline\t${what}\t${r.last_name ?? r.nir}\t${day(r.birth_date)}`)
  }
  // A batch under one Sync: the refusal fails it whole; the connection goes on.
  try {
    await sql.batch([
      sql`SELECT last_name FROM patients WHERE nir = ${nir(prefix + '01')}`,
      sql`SELECT id FROM patients ORDER BY length(last_name)`
    ])
    console.log('batch-refused\tnone')
  } catch (e) {
    console.log(`batch-refused\t${e.code}\t${e.index}`)
  }
  for (const r of await sql`SELECT last_name, birth_date FROM patients WHERE nir = ${nir(prefix + '04')}`) {
    console.log(`pipeline\tlast\t${r.last_name}\t${day(r.birth_date)}`)
  }

  // A transaction: the sealed date updated, committed, read back.
  await sql.begin(async (sql) => {
    const update = await sql`
      UPDATE patients SET birth_date = ${new Date('1990-01-31')} WHERE nir = ${nir(prefix + '03')}
    `
    console.log(`update\t${update.count}`)
  })
  const [{ birth_date }] = await sql`SELECT birth_date FROM patients WHERE nir = ${nir(prefix + '03')}`
  console.log(`date\t${day(birth_date)}`)
} finally {
  await sql.end({ timeout: 5 })
}
