// A hospital application's data access written as node-postgres (pg) users write it, run
// through pgseal by tests/tests/e2e/drivers_scripted.rs. Prints one tab-separated line per result.
//
// Usage: node hospital_pg.js CONNECTION_URL NIR_PREFIX   (NIR_PREFIX: 11 digits, unique per run)
//
// node-postgres sends every parameter untyped (OID 0) in text, a JS Date as local time with
// its offset; a query with a `name` is prepared once per connection; a query without values
// goes as a simple Query. Results come back in text; a date is parsed into a local Date.

import pg from 'pg'

/** A valid NIR from its 13-digit body: the key is 97 - body mod 97. */
function nir(body) {
  return body + String(97n - BigInt(body) % 97n).padStart(2, '0')
}

const pad = (n) => String(n).padStart(2, '0')
/** A date column as node-postgres returns it (local midnight), as YYYY-MM-DD. */
const day = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`

const [url, prefix] = process.argv.slice(2)
const client = new pg.Client({ connectionString: url })
await client.connect()
try {
  // Several rows in one INSERT, dates as JS Dates; one more whose date is a string cast in SQL.
  const values = []
  const tuples = [1, 2, 3].map((i, k) => {
    values.push(nir(prefix + pad(i)), `Lefèvre-${i}`, 'Élodie', new Date(1992, 6, i), 'Lyon')
    const n = k * 5
    return `($${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5})`
  })
  let inserted = (await client.query(
    `INSERT INTO patients (nir, last_name, first_name, birth_date, city) VALUES ${tuples.join(', ')}`,
    values
  )).rowCount
  inserted += (await client.query(
    'INSERT INTO patients (nir, last_name, first_name, birth_date, city) VALUES ($1, $2, $3, $4::date, $5)',
    [nir(prefix + '04'), 'Lefèvre-4', 'Élodie', '1992-07-04', 'Lyon']
  )).rowCount
  console.log(`inserted\t${inserted}`)

  // A consultation with a timestamptz, read back.
  const { rows: [{ id }] } = await client.query('SELECT id FROM patients WHERE nir = $1', [nir(prefix + '01')])
  await client.query(
    'INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes) VALUES ($1, $2, $3, $4)',
    [id, new Date('2024-03-01T09:30:00+01:00'), 'E11.9', 'Suivi diabète']
  )
  const seen = await client.query(
    'SELECT seen_at, diagnosis_code, notes FROM consultations WHERE patient_id = $1', [id]
  )
  for (const r of seen.rows) {
    console.log(`consultation\t${r.seen_at.toISOString().replace('.000Z', 'Z')}\t${r.diagnosis_code}\t${r.notes}`)
  }

  // Lookups by NIR (a named, prepared statement) and by last name, many times.
  for (let round = 0; round < 8; round++) {
    const i = 1 + round % 4
    const byNir = await client.query({
      name: 'patient-by-nir',
      text: 'SELECT last_name, first_name, birth_date FROM patients WHERE nir = $1',
      values: [nir(prefix + pad(i))]
    })
    for (const r of byNir.rows) console.log(`nir\t${round}\t${r.last_name}\t${r.first_name}\t${day(r.birth_date)}`)
    const byName = await client.query(
      'SELECT nir, birth_date FROM patients WHERE last_name = $1 AND first_name = $2',
      [`Lefèvre-${i}`, 'Élodie']
    )
    for (const r of byName.rows) console.log(`name\t${round}\t${r.nir}\t${day(r.birth_date)}`)
  }

  // A statement pgseal refuses, then the same connection again.
  try {
    await client.query('SELECT id FROM patients ORDER BY length(last_name)')
    console.log('refused\tnone')
  } catch (e) {
    console.log(`refused\t${e.code}`)
  }
  const count = await client.query(
    'SELECT count(*) FROM patients WHERE city = $1 AND first_name = $2', ['Lyon', 'Élodie']
  )
  console.log(`count\t${count.rows[0].count}`)

  // A transaction: the sealed date updated, committed, read back.
  await client.query('BEGIN')
  try {
    const update = await client.query(
      'UPDATE patients SET birth_date = $1 WHERE nir = $2', [new Date(1990, 0, 31), nir(prefix + '03')]
    )
    console.log(`update\t${update.rowCount}`)
    await client.query('COMMIT')
  } catch (e) {
    await client.query('ROLLBACK')
    throw e
  }
  const date = await client.query('SELECT birth_date FROM patients WHERE nir = $1', [nir(prefix + '03')])
  console.log(`date\t${day(date.rows[0].birth_date)}`)
} finally {
  await client.end()
}
