// BouncyCastle peer for certgate's attribute-certificate interoperability tests.
//   java AcInterop parse AC.der AA.pem          -> verifies and prints fields
//   java AcInterop make AA-KEY.pem AA.pem HOLDER.pem GATEWAY OUT.der
import java.io.FileReader;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.PrivateKey;
import java.security.Security;
import java.util.Date;

import org.bouncycastle.asn1.ASN1BitString;
import org.bouncycastle.asn1.ASN1Encodable;
import org.bouncycastle.asn1.ASN1EncodableVector;
import org.bouncycastle.asn1.ASN1ObjectIdentifier;
import org.bouncycastle.asn1.ASN1Sequence;
import org.bouncycastle.asn1.ASN1String;
import org.bouncycastle.asn1.DERBitString;
import org.bouncycastle.asn1.DERNull;
import org.bouncycastle.asn1.DERSequence;
import org.bouncycastle.asn1.DERUTF8String;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.x509.Attribute;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.IetfAttrSyntax;
import org.bouncycastle.asn1.x509.RoleSyntax;
import org.bouncycastle.asn1.x509.Target;
import org.bouncycastle.asn1.x509.TargetInformation;
import org.bouncycastle.asn1.x509.Targets;
import org.bouncycastle.cert.AttributeCertificateHolder;
import org.bouncycastle.cert.AttributeCertificateIssuer;
import org.bouncycastle.cert.X509AttributeCertificateHolder;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.X509v2AttributeCertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509ExtensionUtils;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.operator.jcajce.JcaContentVerifierProviderBuilder;
import org.bouncycastle.util.encoders.Hex;

public class AcInterop {
    static final String CLEARANCE_RFC3281 = "2.5.1.5.55";
    static final String CLEARANCE_POLICY = "2.25.77420421246107097186889716350714180255.2.1";
    static final String GRANTS = "2.25.77420421246107097186889716350714180255.1.1";

    static Object readPem(String path) throws Exception {
        try (PEMParser parser = new PEMParser(new FileReader(path))) {
            return parser.readObject();
        }
    }

    static String valueText(ASN1Encodable value) {
        if (value instanceof ASN1String) {
            return ((ASN1String) value).getString();
        }
        return value.toString();
    }

    static void parse(String acPath, String aaPath) throws Exception {
        X509AttributeCertificateHolder ac =
            new X509AttributeCertificateHolder(Files.readAllBytes(Paths.get(acPath)));
        X509CertificateHolder aa = (X509CertificateHolder) readPem(aaPath);
        boolean ok = ac.isSignatureValid(
            new JcaContentVerifierProviderBuilder().setProvider("BC").build(aa));
        System.out.println("signature " + (ok ? "valid" : "INVALID"));
        System.out.println("holder-serial " + ac.getHolder().getSerialNumber().toString(16));
        System.out.println("serial " + ac.getSerialNumber().toString(16));
        for (Attribute attribute : ac.getAttributes()) {
            String oid = attribute.getAttrType().getId();
            for (ASN1Encodable value : attribute.getAttrValues()) {
                if (oid.equals("2.5.4.72")) {
                    System.out.println("attr " + oid + " " + RoleSyntax.getInstance(value).getRoleNameAsString());
                } else if (oid.equals("1.3.6.1.5.5.7.10.4") || oid.equals(GRANTS)) {
                    for (Object item : IetfAttrSyntax.getInstance(value).getValues()) {
                        System.out.println("attr " + oid + " " + valueText((ASN1Encodable) item));
                    }
                } else {
                    ASN1Sequence clearance = ASN1Sequence.getInstance(value);
                    String bits = "default";
                    if (clearance.size() > 1) {
                        ASN1BitString classList = ASN1BitString.getInstance(clearance.getObjectAt(1));
                        bits = Hex.toHexString(classList.getBytes()) + "/" + classList.getPadBits();
                    }
                    System.out.println("attr " + oid + " " + clearance.getObjectAt(0) + " " + bits);
                }
            }
        }
        Extension targeting = ac.getExtension(Extension.targetInformation);
        System.out.println("targeting-critical " + targeting.isCritical());
        TargetInformation info = TargetInformation.getInstance(targeting.getParsedValue());
        for (Targets targets : info.getTargetsObjects()) {
            for (Target target : targets.getTargets()) {
                System.out.println("target " + valueText(target.getTargetName().getName()));
            }
        }
    }

    static void make(String keyPath, String aaPath, String holderPath, String gateway, String outPath)
        throws Exception {
        PrivateKey key = new JcaPEMKeyConverter().setProvider("BC")
            .getPrivateKey((PrivateKeyInfo) readPem(keyPath));
        X509CertificateHolder aa = (X509CertificateHolder) readPem(aaPath);
        X509CertificateHolder holder = (X509CertificateHolder) readPem(holderPath);
        long now = System.currentTimeMillis();
        X509v2AttributeCertificateBuilder builder = new X509v2AttributeCertificateBuilder(
            new AttributeCertificateHolder(holder),
            new AttributeCertificateIssuer(aa.getSubject()),
            BigInteger.valueOf(now),
            new Date(now - 60_000L),
            new Date(now + 3_600_000L));
        builder.addAttribute(new ASN1ObjectIdentifier("2.5.4.72"),
            new RoleSyntax(new GeneralName(GeneralName.uniformResourceIdentifier,
                "urn:certgate:role:operator")));
        builder.addAttribute(new ASN1ObjectIdentifier("1.3.6.1.5.5.7.10.4"),
            IetfAttrSyntax.getInstance(new DERSequence(new DERSequence(new DERUTF8String("ops")))));
        ASN1EncodableVector clearance = new ASN1EncodableVector();
        clearance.add(new ASN1ObjectIdentifier(CLEARANCE_POLICY));
        clearance.add(new DERBitString(new byte[] {(byte) 0x10}, 4)); // bit 3 = secret
        builder.addAttribute(new ASN1ObjectIdentifier(CLEARANCE_RFC3281), new DERSequence(clearance));
        Target target = new Target(Target.targetName,
            new GeneralName(GeneralName.uniformResourceIdentifier, "certgate:gateway:" + gateway));
        builder.addExtension(Extension.targetInformation, true,
            new TargetInformation(new Target[] {target}));
        builder.addExtension(Extension.noRevAvail, false, DERNull.INSTANCE);
        builder.addExtension(Extension.authorityKeyIdentifier, false,
            new JcaX509ExtensionUtils().createAuthorityKeyIdentifier(
                new JcaX509CertificateConverter().setProvider("BC").getCertificate(aa)));
        String algorithm = key.getAlgorithm().startsWith("Ed") ? "Ed25519" : "SHA256withECDSA";
        ContentSigner signer = new JcaContentSignerBuilder(algorithm).setProvider("BC").build(key);
        Files.write(Paths.get(outPath), builder.build(signer).getEncoded());
    }

    public static void main(String[] args) throws Exception {
        Security.addProvider(new BouncyCastleProvider());
        if (args[0].equals("parse")) {
            parse(args[1], args[2]);
        } else {
            make(args[1], args[2], args[3], args[4], args[5]);
        }
    }
}
